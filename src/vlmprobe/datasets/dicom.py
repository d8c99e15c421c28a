"""``dicom``: a folder of DICOM files (the form clinical images arrive in), labelled by sub-folder, CSV or tag.

Every file under ``root`` that is DICOM (suffix ``.dcm`` / ``.dicom``, or no suffix and the ``DICM``
preamble, as PACS exports name them) and holds pixel data is one image (or one per frame, see
``frames``); files without pixel data (DICOMDIR, structured reports, RT structures) are left out
with a logged count. Pixels are shown as a viewer shows them (:mod:`vlmprobe.dicom`: modality LUT,
VOI window or LUT, MONOCHROME1 inverted, colour to RGB); the manifest path names the file, frame and
VOI choice, and :func:`vlmprobe.images.load_image` decodes it like any image.

Spec keys:

- ``root`` (required); the label from ``labels_csv`` (a CSV under ``root``, or absolute) keyed by
  ``label_key: path`` (default; the file's path relative to ``root``, column ``key_column``, default
  ``path``) or ``label_key: SOPInstanceUID`` (column default ``SOPInstanceUID``), label in
  ``label_column`` (default ``label``); else from a tag (``label_tag: BodyPartExamined``); else from
  the first sub-folder under ``root`` (``<root>/<label>/.../*.dcm``).
- ``tags``: further DICOM keywords kept as ``meta_<Keyword>`` beside :data:`DEFAULT_TAGS`, so that
  ``group: meta_PatientID`` and ``nuisances: [meta_Manufacturer]`` work as for any dataset.
- ``voi``: which VOI transform when a file offers several (``first``, default; ``none``: the full
  range; a 0-based index; a window's explanation such as ``LUNG``; or ``<center>/<width>``).
- ``frames``: the multi-frame policy: ``middle`` (default: the central frame, a cine loop's or a
  volume's most representative single view), ``first``, or ``all`` (one sample per frame, ids
  ``<file>#<frame>``; frames of one file share its tags, so group by ``meta_SOPInstanceUID`` or
  patient to keep them on one side).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vlmprobe.datasets.csv_manifest import read_rows, require_columns
from vlmprobe.datasets.records import DatasetContext, Record, spec_value
from vlmprobe.dicom import DICOM_SUFFIXES, dicom_reference, frame_count, read_dataset
from vlmprobe.errors import VlmprobeError

log = logging.getLogger(__name__)

DEFAULT_TAGS = (
    "PatientID", "StudyInstanceUID", "SOPInstanceUID", "Modality", "Manufacturer", "ManufacturerModelName", "ViewPosition",
    "PatientSex", "PatientAge", "BodyPartExamined", "KVP", "BurnedInAnnotation", "PhotometricInterpretation",
)  # fmt: skip
FRAME_POLICIES = ("middle", "first", "all")


def is_dicom_file(path: Path) -> bool:
    if path.name.startswith(".") or path.name.upper() == "DICOMDIR":
        return False
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix:
        return False
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def tag_text(ds: Any, keyword: str) -> str:
    """A tag's value as text (multi-valued joined by a backslash, as DICOM writes them); '' when absent."""
    element = ds.get(keyword)
    if element is None:
        return ""
    if hasattr(element, "__iter__") and not isinstance(element, (str, bytes)):
        return "\\".join(str(v) for v in element)
    if isinstance(element, bytes):
        return ""
    return str(element).strip()


def _frames(ds: Any, policy: str) -> list[int]:
    count = frame_count(ds)
    if policy == "all":
        return list(range(count))
    return [0 if policy == "first" else count // 2]


def _csv_labels(spec: dict[str, Any], ctx: DatasetContext, root: Path) -> tuple[str, dict[str, str]]:
    csv_path = ctx.resolve(spec["labels_csv"]) if Path(spec["labels_csv"]).is_absolute() else root / spec["labels_csv"]
    if not csv_path.is_file():
        csv_path = ctx.resolve(spec["labels_csv"])
    key = spec.get("label_key", "path")
    if key not in ("path", "SOPInstanceUID"):
        raise VlmprobeError(f"Dataset {ctx.name!r}: `label_key: {key}` is neither path nor SOPInstanceUID.", "fix `label_key`.")
    key_column = spec.get("key_column", key)
    label_column = spec.get("label_column", "label")
    rows = read_rows(csv_path, ctx.name, spec.get("separator", ","))
    require_columns(ctx.name, csv_path, rows, [key_column, label_column])
    labels = {}
    for row in rows:
        value = (row[key_column] or "").strip()
        labels[Path(value).as_posix() if key == "path" else value] = (row[label_column] or "").strip()
    return key, labels


def load_records(spec: dict[str, Any], ctx: DatasetContext) -> list[Record]:
    root = ctx.resolve(spec_value(spec, "root", ctx.name))
    if not root.is_dir():
        raise VlmprobeError(f"Dataset {ctx.name!r}: folder {str(root)!r} does not exist.", f"put the DICOM files there or correct `datasets: {ctx.name}: root:`.")
    policy = spec.get("frames", "middle")
    if policy not in FRAME_POLICIES:
        raise VlmprobeError(f"Dataset {ctx.name!r}: `frames: {policy}` is not one of {list(FRAME_POLICIES)}.", "fix `frames`.")
    voi = str(spec.get("voi", "first"))
    tags = list(dict.fromkeys([*DEFAULT_TAGS, *spec.get("tags", [])]))
    key, csv_labels = _csv_labels(spec, ctx, root) if spec.get("labels_csv") else (None, {})
    label_tag = spec.get("label_tag")
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_dicom_file(p))
    records: list[Record] = []
    no_pixels, unlabelled, outside_folders = [], [], []
    matched: set[str] = set()
    for path in files:
        relative = path.relative_to(root).as_posix()
        ds = read_dataset(path, pixels=False)
        if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds and "Rows" not in ds:
            no_pixels.append(relative)
            continue
        if key is not None:
            lookup = relative if key == "path" else tag_text(ds, "SOPInstanceUID")
            label = csv_labels.get(lookup, "")
            if lookup in csv_labels:
                matched.add(lookup)
        elif label_tag:
            label = tag_text(ds, label_tag)
        elif "/" in relative:
            label = relative.split("/", 1)[0]
        else:
            outside_folders.append(relative)
            continue
        if not label:
            unlabelled.append(relative)
            continue
        meta = {keyword: tag_text(ds, keyword) for keyword in tags}
        frames = _frames(ds, policy)
        stem = relative.rsplit(".", 1)[0] if Path(relative).suffix.lower() in DICOM_SUFFIXES else relative
        for frame in frames:
            frame_meta = {**meta, "frame": str(frame), "n_frames": str(frame_count(ds))}
            sample_id = f"{stem}#{frame:04d}" if policy == "all" and frame_count(ds) > 1 else stem
            records.append(Record(sample_id=sample_id, path=dicom_reference(path.resolve(), frame, voi), labels=(label,), meta=frame_meta))
    if outside_folders:
        raise VlmprobeError(
            f"Dataset {ctx.name!r}: {len(outside_folders)} DICOM file(s) lie directly in {str(root)!r}, outside any class "
            f"sub-folder, e.g. {outside_folders[:3]}.",
            "put each file in a sub-folder named by its class, or give the labels by `labels_csv:` or `label_tag:`.",
        )
    if key is not None:
        missing = sorted(set(csv_labels) - matched)
        if missing:
            raise VlmprobeError(
                f"Dataset {ctx.name!r}: {len(missing)} row(s) of `labels_csv` name no DICOM file under {str(root)!r} "
                f"(by {key}), e.g. {missing[:3]}.",
                "restore the files, fix the keys (paths are relative to `root`), or remove those rows.",
            )
    if no_pixels:
        log.info("dataset %s: %d DICOM file(s) without pixel data left out (e.g. %s)", ctx.name, len(no_pixels), no_pixels[:3])
    if unlabelled:
        log.warning("dataset %s: %d DICOM file(s) without a label left out (e.g. %s)", ctx.name, len(unlabelled), unlabelled[:3])
    if not records:
        raise VlmprobeError(f"Dataset {ctx.name!r}: no labelled DICOM image under {str(root)!r}.", "check `root` and how labels are given.")
    log.info("dataset %s: %d DICOM image(s) from %d file(s)", ctx.name, len(records), len(files) - len(no_pixels))
    return records
