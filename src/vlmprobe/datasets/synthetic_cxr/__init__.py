"""``synthetic-cxr``: a deterministic generator of chest-radiograph-like images with planted findings.

It stands in for IU-Xray (seeds ``000_*`` / ``001_*``): grayscale frontal "radiographs" with a strongly
imbalanced, multi-label set of findings, each with a tight bounding box so that Grad-CAM maps can be scored
against ground truth.

How an image is made
--------------------
The package has one module per step: :mod:`.specs` (the plain data of a case), :mod:`.sampling` (drawing
it), :mod:`.geometry` (the chest's shapes), :mod:`.render` (pixels and boxes); this module writes the images
and is the ``synthetic-cxr`` dataset kind.

1. :func:`sample_case` draws everything random about image ``index`` - the anatomy, which findings are
   present and where, and the seeds of every texture - from its own ``SeedSequence(seed, spawn_key=(index,
   purpose))``. Image ``i`` is therefore the same whatever ``n_images`` is, and each purpose (labels,
   anatomy, noise, each finding) has its own stream, so changing one finding's prevalence never moves the
   anatomy or another finding.
2. :func:`render_case` turns a :class:`Case` into pixels. Every finding is a *local* change of the
   pixel-wise density map with compact support; the global steps after it (contrast, gamma, a slight blur,
   noise with a fixed seed) are the same with or without the finding. Rendering the same case with a
   different ``findings`` list therefore changes pixels only around the findings that differ - which is
   what the tests check against the recorded boxes.

Anatomy (all in "anatomy" coordinates, the unit square, mapped to pixels through a small random affine):
body outline with shoulders, dark lung fields with a domed diaphragm and sharp costophrenic angles, lung
markings (bright speckle densest at the hila), heart shadow, spine, trachea, clavicles, posterior and
anterior ribs, a stomach bubble in some images (a dark distractor), then random global contrast / gamma /
brightness / blur / noise so that global statistics separate the classes only weakly (a logistic regression
on intensity percentiles and histograms reaches AUC ~0.5-0.8 per finding; the large findings, cardiomegaly and
effusion, show through the mean brightness a little, as they do in real radiographs).

Findings (each at most once per image, several per image possible):

============  ================================================  =================  ==========
finding       look                                              box at 128 px      prevalence
                                                                (median w x h)
============  ================================================  =================  ==========
opacity       mottled, ill-defined bright patch inside a lung    22 x 25            0.28
cardiomegaly  heart shadow enlarged: cardiothoracic ratio         50 x 33            0.20
              0.49-0.70 (normal 0.38-0.50); box = the cardiac
              silhouette where it shows against the lungs
effusion      homogeneous fluid at a lung base, its meniscus     37 x 23            0.14
              rising laterally, blunting the costophrenic angle
nodule        small round, sharply marginated bright blob        10 x 10            0.10
pneumothorax  dark rim without lung markings at apex and side,   34 x 55            0.05
              bounded by a thin bright pleural line
============  ================================================  =================  ==========

Findings are drawn independently, so the marginal prevalences are the table's and about 42 % of images
are ``normal`` (IU-Xray: ~40 % normal, a long tail of rare findings).

Patients (``images_per_patient: k``, default 1): consecutive runs of ``k`` images are one patient
(``meta_patient``), re-exposed: the chest and findings of the run's first image; each further image
moves the acquisition (position, scale, rotation, exposure, gamma, blur) 30 % of the way towards an
independent draw and has new noise (:func:`patient_case`).
Same-patient images are near-duplicates with the same labels: a known identity leak for group-aware
splits (``group: meta_patient``).

Shortcut (optional, ``shortcut: {finding, rate}``): a burned-in text marker - a small bright two-letter
glyph patch in the top-left corner, as laterality / department stamps are burned into real radiographs -
drawn onto the finished 8-bit image of some cases. An image with ``finding`` carries it with probability
``rate``, an image without it with probability ``1 - rate`` (the *agreement rate*: 0.5 = independent of the
finding, 1 = marker exactly when the finding is present, 0 = exactly when it is absent). The draw comes from
the image's own stream, so the anatomy and findings are the same with or without a shortcut, and the marker
is recorded as ``meta_marker`` (``yes``/``no``): a known-truth nuisance for the nuisance stage.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from PIL import Image

from vlmprobe.datasets.records import Box, Record
from vlmprobe.datasets.synthetic_cxr.render import burn_marker, marker_region, render_case
from vlmprobe.datasets.synthetic_cxr.sampling import (
    DEFAULT_PREVALENCE,
    REPEAT_EXPOSURE_JITTER,
    Shortcut,
    patient_case,
    resolve_prevalence,
    resolve_shortcut,
    sample_case,
)
from vlmprobe.datasets.synthetic_cxr.specs import FINDINGS, NORMAL_LABEL, Case, Finding, Rendered
from vlmprobe.errors import VlmprobeError

__all__ = [
    "DEFAULT_PREVALENCE",
    "FINDINGS",
    "MARKER_META",
    "NORMAL_LABEL",
    "REPEAT_EXPOSURE_JITTER",
    "Case",
    "Finding",
    "Rendered",
    "Shortcut",
    "burn_marker",
    "generate_synthetic_cxr",
    "load_records",
    "marker_region",
    "patient_case",
    "render_case",
    "resolve_prevalence",
    "resolve_shortcut",
    "sample_case",
    "sample_id",
]

SAMPLE_ID_PREFIX = "scxr-"
MIN_IMAGE_SIZE = 32
MARKER_META = "marker"  # the meta key (manifest column meta_marker) of the burned-in shortcut marker


_FILE_PATTERN = re.compile(rf"^{re.escape(SAMPLE_ID_PREFIX)}\d{{5,}}\.png$")


def sample_id(index: int) -> str:
    return f"{SAMPLE_ID_PREFIX}{index:05d}"


def generate_synthetic_cxr(
    out_dir: Path,
    n_images: int = 600,
    image_size: int = 128,
    seed: int = 0,
    prevalence: Mapping[str, float] | None = None,
    images_per_patient: int = 1,
    shortcut: Mapping | None = None,
) -> list[dict]:
    """Write ``n_images`` PNGs (8-bit grayscale) into ``out_dir`` and return one record per image.

    Record: ``{"sample_id", "path" (absolute), "labels" (["normal"] or sorted finding names),
    "boxes": [{"label", "x0", "y0", "x1", "y1"}, ...]}`` in pixels, ``x1``/``y1`` exclusive; with a
    ``shortcut`` also ``"meta": {"marker": "yes" | "no"}``.
    Re-running overwrites the images and removes ``scxr-*.png`` files a previous, larger run left behind.
    With ``images_per_patient`` > 1 the record's ``"meta"`` also has ``"patient"`` (see :func:`patient_case`).
    """
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise VlmprobeError(f"synthetic-cxr n_images is {n_images!r}.", "give a positive whole number of images.")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise VlmprobeError(
            f"synthetic-cxr image_size is {image_size!r}.", f"give a whole number of pixels >= {MIN_IMAGE_SIZE}."
        )
    if isinstance(images_per_patient, bool) or not isinstance(images_per_patient, int) or images_per_patient < 1:
        raise VlmprobeError(f"synthetic-cxr images_per_patient is {images_per_patient!r}.", "give a whole number >= 1.")
    resolve_prevalence(prevalence)  # fail before writing anything
    rule = resolve_shortcut(shortcut)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    records = []
    wanted = set()
    for index in range(n_images):
        case = patient_case(seed, index, image_size, prevalence, images_per_patient, rule)
        rendered = render_case(case)
        name = sample_id(index)
        path = out_dir / f"{name}.png"
        wanted.add(path.name)
        Image.fromarray(rendered.image).save(path, format="PNG")
        meta = {"patient": f"p{index // images_per_patient:05d}"} if images_per_patient > 1 else {}
        if rule is not None:
            meta[MARKER_META] = "yes" if case.marker else "no"
        record = {
            "sample_id": name,
            "path": str(path),
            "labels": case.labels,
            "boxes": [asdict(box) for box in rendered.boxes],
        }
        if meta:
            record["meta"] = meta
        records.append(record)
    for stale in out_dir.iterdir():
        if _FILE_PATTERN.match(stale.name) and stale.name not in wanted:
            stale.unlink()
    return records


def load_records(spec: Mapping, ctx) -> list:
    """Dataset kind ``synthetic-cxr``: generate the images into the dataset's data folder, one record each.

    Spec keys: ``n_images`` (default 600), ``image_size`` (default 128), ``prevalence`` (optional
    overrides), ``images_per_patient`` (default 1), ``shortcut`` (optional burned-in marker, ``meta_marker``);
    the seed is the workflow's ``seed``.
    """
    generated = generate_synthetic_cxr(
        ctx.data_dir / "images",
        n_images=int(spec.get("n_images", 600)),
        image_size=int(spec.get("image_size", 128)),
        seed=ctx.seed,
        prevalence=spec.get("prevalence"),
        images_per_patient=int(spec.get("images_per_patient", 1)),
        shortcut=spec.get("shortcut"),
    )
    return [
        Record(
            sample_id=item["sample_id"],
            path=item["path"],
            labels=tuple(item["labels"]),
            boxes=tuple(Box(**box) for box in item["boxes"]),
            meta=dict(item.get("meta", {})),
        )
        for item in generated
    ]
