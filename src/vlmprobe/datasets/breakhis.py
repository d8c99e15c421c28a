"""``breakhis``: the BreaKHis breast-cancer histopathology images (Spanhol et al. 2016).

The public download nests ``BreaKHis_v1/histology_slides/breast/{benign,malignant}/SOB/<subtype>/
SOB_<B|M>_<code>_<year>-<slide>/<40X|100X|200X|400X>/<image>.png``, 7,909 images of 82 patients.
Each file name repeats what the folders say: ``SOB_B_A-14-22549AB-40-001.png`` is procedure SOB,
benign (B), adenosis (A), slide 14-22549AB, 40x magnification, image 001. The name is parsed (it is
what the dataset's authors define) and checked against the benign/malignant folder it lies in.

The label is the poster's two classes (``label_by: tumor_class``) unless ``label_by`` picks
``subtype`` (8 classes) or ``magnification``; the other fields are kept as ``meta_*`` columns
(``meta_subtype``, ``meta_magnification``, ``meta_patient``, ``meta_case``), so UMAP grids can be
coloured by them. ``magnifications: [40, 400]`` keeps only those magnifications.

What a patient is: the download has 82 case folders (the "82 patients" of Spanhol et al. 2016), but
slide ``14-13412`` is filed twice, under ductal carcinoma (``SOB_M_DC_14-13412``) and lobular carcinoma
(``SOB_M_LC_14-13412``); the dataset's own 5-fold lists (``dsfold1.txt`` ...) put the two in different
folds. One slide number is one tissue sample of one woman, so ``meta_patient`` is the slide id
(``14-13412``): 81 patients, and a patient-aware split (``group: meta_patient``) keeps every image of
that slide on one side. ``meta_case`` is the authors' case folder (``SOB_M_DC-14-13412``; 82 values)
for whoever wants their count.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from vlmprobe.datasets.records import DatasetContext, Record, spec_value
from vlmprobe.errors import VlmprobeError
from vlmprobe.images import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

FILE_NAME = re.compile(
    r"^(?P<procedure>[A-Z]+)_(?P<tumor_class>[BM])_(?P<subtype>[A-Z]+)-(?P<patient>\d+-[0-9A-Za-z]+)-(?P<magnification>\d+)-(?P<index>\d+)$"
)
TUMOR_CLASSES = {"B": "benign", "M": "malignant"}
SUBTYPES = {
    "A": "adenosis",
    "F": "fibroadenoma",
    "PT": "phyllodes_tumor",
    "TA": "tubular_adenoma",
    "DC": "ductal_carcinoma",
    "LC": "lobular_carcinoma",
    "MC": "mucinous_carcinoma",
    "PC": "papillary_carcinoma",
}
MAGNIFICATIONS = (40, 100, 200, 400)
LABEL_FIELDS = ("tumor_class", "subtype", "magnification")
OFFICIAL_COUNTS_BY_MAGNIFICATION = {40: 1995, 100: 2081, 200: 2013, 400: 1820}
"""Images per magnification in the public release (7,909 in all; Spanhol et al. 2016, table I)."""


def selected_magnifications(spec: dict[str, Any], dataset: str) -> tuple[int, ...]:
    chosen = tuple(int(m) for m in spec.get("magnifications", MAGNIFICATIONS))
    unknown = sorted(set(chosen) - set(MAGNIFICATIONS))
    if unknown or not chosen:
        raise VlmprobeError(
            f"Dataset {dataset!r}: `magnifications: {list(chosen)}` has values outside {list(MAGNIFICATIONS)}.",
            f"choose among {list(MAGNIFICATIONS)} (or leave the key out for all four).",
        )
    return chosen


def expected_count(spec: dict[str, Any]) -> int:
    """Images the public download yields for the spec's magnifications (all four: the poster's n = 7,909)."""
    return sum(OFFICIAL_COUNTS_BY_MAGNIFICATION[m] for m in selected_magnifications(spec, "?"))


def load_records(spec: dict[str, Any], ctx: DatasetContext) -> list[Record]:
    root = ctx.resolve(spec_value(spec, "root", ctx.name))
    if not root.is_dir():
        raise VlmprobeError(
            f"Dataset {ctx.name!r}: folder {str(root)!r} does not exist.",
            f"download BreaKHis_v1 and point `datasets: {ctx.name}: root:` at it (or at its histology_slides/breast folder).",
        )
    label_by = spec.get("label_by", "tumor_class")
    if label_by not in LABEL_FIELDS:
        raise VlmprobeError(f"Dataset {ctx.name!r}: `label_by: {label_by}` is not one of {list(LABEL_FIELDS)}.", "fix `label_by`.")
    magnifications = selected_magnifications(spec, ctx.name)
    records = []
    unparsed = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        if path.name.startswith("."):
            continue
        match = FILE_NAME.match(path.stem)
        if not match or match.group("subtype") not in SUBTYPES:
            unparsed.append(path.relative_to(root).as_posix())
            continue
        fields = match.groupdict()
        tumor_class = TUMOR_CLASSES[fields["tumor_class"]]
        folders = {part.lower() for part in path.relative_to(root).parts[:-1]}
        other_class = TUMOR_CLASSES["M" if fields["tumor_class"] == "B" else "B"]
        if other_class in folders:
            raise VlmprobeError(
                f"Dataset {ctx.name!r}: {path.relative_to(root).as_posix()!r} is named {tumor_class} but lies in a {other_class!r} folder.",
                "restore the download's folder layout (benign/ and malignant/ as published).",
            )
        magnification = int(fields["magnification"])
        if magnification not in magnifications:
            continue
        values = {"tumor_class": tumor_class, "subtype": SUBTYPES[fields["subtype"]], "magnification": f"{magnification}X"}
        records.append(
            Record(
                sample_id=path.stem,
                path=str(path.resolve()),
                labels=(values[label_by],),
                meta={
                    **{key: value for key, value in values.items() if key != label_by},
                    "patient": fields["patient"],
                    "case": f"{fields['procedure']}_{fields['tumor_class']}_{fields['subtype']}-{fields['patient']}",
                },
            )
        )
    if unparsed:
        raise VlmprobeError(
            f"Dataset {ctx.name!r}: {len(unparsed)} image(s) under {str(root)!r} are not named like BreaKHis images "
            f"(SOB_<B|M>_<subtype>-<slide>-<magnification>-<n>.png), e.g. {unparsed[:3]}.",
            "point `root` at the BreaKHis_v1 folder and remove files that are not part of the download.",
        )
    if not records:
        raise VlmprobeError(f"Dataset {ctx.name!r}: no BreaKHis images under {str(root)!r} at magnifications {list(magnifications)}.", "check `root`.")
    log.info(
        "dataset %s: %d BreaKHis images from %d patients (slide ids) in %d case folders",
        ctx.name, len(records), len({r.meta["patient"] for r in records}), len({r.meta["case"] for r in records}),
    )
    return records
