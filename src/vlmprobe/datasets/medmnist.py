"""``medmnist``: a MedMNIST ``.npz`` (e.g. ``pneumoniamnist.npz``) with its class names and a choice of parts.

The generic ``npz`` kind pools all three official parts; the poster's PneumoniaMNIST has n = 4,708,
which is exactly the official *train* part (4,708 / 524 / 624), so this kind adds ``parts:
[train]`` (default: all three, like ``npz``). Class names come from MedMNIST's own label
descriptions for the file's flag (``pneumoniamnist`` -> ``normal``, ``pneumonia``), so labels read
as words, not indices; ``label_names`` overrides them. The ``_64``/``_128``/``_224`` files of
MedMNIST+ work the same (the flag is read from the file name without the size suffix).
"""

from __future__ import annotations

import re
from typing import Any

from vlmprobe.datasets import npz
from vlmprobe.datasets.records import DatasetContext, Record, spec_value
from vlmprobe.errors import VlmprobeError

LABEL_NAMES = {
    # MedMNIST v2 INFO["label"] of each flag, index order
    "pneumoniamnist": ["normal", "pneumonia"],
    "breastmnist": ["malignant", "normal, benign"],
}
OFFICIAL_PART_SIZES = {"pneumoniamnist": {"train": 4708, "val": 524, "test": 624}}


def flag_of(path: str) -> str:
    stem = str(path).replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".npz")
    return re.sub(r"_\d+$", "", stem)


def selected_parts(spec: dict[str, Any], dataset: str) -> list[str]:
    parts = list(spec.get("parts", npz.PARTS))
    unknown = sorted(set(parts) - set(npz.PARTS))
    if unknown or not parts:
        raise VlmprobeError(f"Dataset {dataset!r}: `parts: {parts}` must be a non-empty subset of {list(npz.PARTS)}.", "fix `parts`.")
    return parts


def expected_count(spec: dict[str, Any]) -> int | None:
    sizes = OFFICIAL_PART_SIZES.get(flag_of(spec.get("path", "")))
    return sum(sizes[part] for part in selected_parts(spec, "?")) if sizes else None


def load_records(spec: dict[str, Any], ctx: DatasetContext) -> list[Record]:
    path = spec_value(spec, "path", ctx.name)
    parts = selected_parts(spec, ctx.name)
    names = spec.get("label_names", LABEL_NAMES.get(flag_of(path)))
    records = npz.load_records({**spec, "label_names": names}, ctx)
    kept = [record for record in records if record.meta.get("official_split") in parts]
    if not kept:
        raise VlmprobeError(f"Dataset {ctx.name!r}: {path!r} has no images in parts {parts}.", "check `parts` and the file.")
    return kept
