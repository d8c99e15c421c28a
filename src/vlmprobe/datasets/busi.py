"""``busi``: Breast Ultrasound Images (BUSI, Al-Dhabyani et al. 2020; the poster's "BreastUS").

The public download (``Dataset_BUSI_with_GT/``) has one folder per class (``benign``, ``malignant``,
``normal``: 437 + 210 + 133 = 780 images). Beside each image ``benign (1).png`` lie its lesion
masks ``benign (1)_mask.png`` and, where an image shows several lesions, ``benign (1)_mask_1.png``,
... The masks are radiologists' annotations, not images: they never become samples (the generic
``imagefolder`` kind would count them as 1,578 images), they become the sample's
``annotation_path`` for Grad-CAM scoring. Several masks of one image are merged (pixel-wise union)
into one PNG under the dataset's results folder, so one path always names the whole annotation.
Masks with no lesion pixel (the ``normal`` class) give no annotation: there is nothing to localise.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vlmprobe.datasets.records import DatasetContext, Record, spec_value
from vlmprobe.errors import VlmprobeError
from vlmprobe.images import IMAGE_SUFFIXES
from vlmprobe.io import atomic_path

log = logging.getLogger(__name__)

MASK_NAME = re.compile(r"^(?P<image>.+)_mask(?:_(?P<index>\d+))?$")
"""``benign (1)_mask`` and ``benign (1)_mask_1`` both belong to image ``benign (1)``."""

OFFICIAL_COUNTS = {"benign": 437, "malignant": 210, "normal": 133}


def expected_count(spec: dict[str, Any]) -> int:
    """Images the public download yields (masks excluded): the poster's n = 780."""
    return sum(OFFICIAL_COUNTS.values())


def read_mask(path: Path, dataset: str) -> np.ndarray:
    try:
        with Image.open(path) as mask:
            return np.asarray(mask.convert("L")) > 0
    except OSError as error:
        raise VlmprobeError(f"Dataset {dataset!r}: mask {str(path)!r} is not a readable image ({error}).", "replace or delete the mask file.") from error


def merge_masks(dataset: str, image_path: Path, masks: list[Path], out_path: Path) -> bool:
    """Write the union of ``masks`` to ``out_path``; False when no mask has a lesion pixel."""
    arrays = [read_mask(mask, dataset) for mask in masks]
    shapes = {array.shape for array in arrays}
    if len(shapes) != 1:
        raise VlmprobeError(
            f"Dataset {dataset!r}: the masks of {str(image_path)!r} differ in size ({sorted(shapes)}).",
            "re-download the dataset; each mask must match its image.",
        )
    union = np.logical_or.reduce(arrays)
    if not union.any():
        return False
    with atomic_path(out_path) as tmp:
        Image.fromarray(union.astype(np.uint8) * 255, mode="L").save(tmp, format="PNG")
    return True


def load_records(spec: dict[str, Any], ctx: DatasetContext) -> list[Record]:
    root = ctx.resolve(spec_value(spec, "root", ctx.name))
    if not root.is_dir():
        raise VlmprobeError(
            f"Dataset {ctx.name!r}: folder {str(root)!r} does not exist.",
            f"download BUSI (Dataset_BUSI_with_GT) there or correct `datasets: {ctx.name}: root:`.",
        )
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise VlmprobeError(f"Dataset {ctx.name!r}: {str(root)!r} has no class sub-folders.", "point `root` at Dataset_BUSI_with_GT/.")
    merged_dir = ctx.data_dir / "masks"
    records: list[Record] = []
    n_multi = n_empty = n_unannotated = 0
    for class_dir in class_dirs:
        images: dict[str, Path] = {}
        masks: dict[str, list[Path]] = {}
        for path in sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
            match = MASK_NAME.match(path.stem)
            if match:
                masks.setdefault(match.group("image"), []).append(path)
            else:
                images[path.stem] = path
        orphans = sorted(set(masks) - set(images))
        if orphans:
            raise VlmprobeError(
                f"Dataset {ctx.name!r}: mask(s) for {[f'{name}_mask' for name in orphans[:5]]} in {str(class_dir)!r} have no image.",
                "restore the image files (a mask alone is not a sample) or delete the stray masks.",
            )
        if not images:
            raise VlmprobeError(f"Dataset {ctx.name!r}: class folder {str(class_dir)!r} holds no images.", "add images or remove the folder.")
        for stem, image_path in images.items():
            own_masks = masks.get(stem, [])
            annotation: str | None = None
            if not own_masks:
                n_unannotated += 1
            elif len(own_masks) == 1:
                if read_mask(own_masks[0], ctx.name).any():
                    annotation = str(own_masks[0].resolve())
                else:
                    n_empty += 1
            else:
                n_multi += 1
                merged = merged_dir / class_dir.name / f"{stem}_mask_union.png"
                if merge_masks(ctx.name, image_path, own_masks, merged):
                    annotation = str(merged.resolve())
                else:
                    n_empty += 1
            records.append(
                Record(
                    sample_id=f"{class_dir.name}/{stem}",
                    path=str(image_path.resolve()),
                    labels=(class_dir.name,),
                    annotation_path=annotation,
                    meta={"n_masks": str(len(own_masks))},
                )
            )
    log.info(
        "dataset %s: %d images; %d with several masks merged, %d with empty masks (no annotation), %d without mask",
        ctx.name, len(records), n_multi, n_empty, n_unannotated,
    )
    return records
