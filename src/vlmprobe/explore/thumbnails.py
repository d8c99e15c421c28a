"""Thumbnails of a dataset's images as JPEG sprite sheets, made once per dataset and shared by every model's page.

A sheet holds ``columns x columns`` square cells of ``size`` pixels; image ``i`` of the manifest (row order)
is cell ``i % per_sheet`` of sheet ``i // per_sheet``, letterboxed on black with its aspect ratio kept. The
folder holds ``sheet_000.jpg``, ... and ``thumbnails.json`` (the sample ids in cell order and the geometry),
which the page writer reads. Sheets rather than one file per image: 28,000 images make 12 files, not 28,000.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmprobe.errors import VlmprobeError

log = logging.getLogger(__name__)

INDEX_NAME = "thumbnails.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ThumbnailIndex:
    """Where each sample's thumbnail is: ``sheets[i // per_sheet]``, cell ``i % per_sheet`` (row-major)."""

    size: int
    columns: int
    sheets: list[str]
    sample_ids: list[str]

    @property
    def per_sheet(self) -> int:
        return self.columns * self.columns

    def to_json(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "size": self.size, "columns": self.columns, "sheets": self.sheets, "sample_ids": self.sample_ids}


def sheet_name(number: int) -> str:
    return f"sheet_{number:03d}.jpg"


def thumbnail(image, size: int):
    """``image`` (RGB) scaled to fit ``size`` x ``size``, centred on black. Small images (8 x 8 digits) are
    enlarged with nearest-neighbour, so their pixels show as they are rather than blurred."""
    from PIL import Image

    scale = size / max(image.width, image.height)
    shape = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(shape, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS, reducing_gap=None if scale > 1 else 3.0)
    cell = Image.new("RGB", (size, size))
    cell.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return cell


def write_thumbnails(paths: list[str], sample_ids: list[str], out_dir: str | Path, size: int = 96, columns: int = 16, quality: int = 85) -> ThumbnailIndex:
    """Decode every image once and write the sprite sheets and index into ``out_dir``, atomically (a folder
    beside it, renamed into place when complete)."""
    from PIL import Image

    from vlmprobe.images import load_image
    from vlmprobe.io import atomic_dir

    if len(paths) != len(sample_ids):
        raise ValueError(f"{len(paths)} paths for {len(sample_ids)} sample ids")
    with atomic_dir(out_dir) as tmp_dir:
        per_sheet = columns * columns
        sheets = []
        for start in range(0, len(paths), per_sheet):
            count = min(per_sheet, len(paths) - start)
            rows = -(-count // columns)
            sheet = Image.new("RGB", (columns * size, rows * size))
            for offset in range(count):
                sheet.paste(thumbnail(load_image(paths[start + offset]), size), ((offset % columns) * size, (offset // columns) * size))
            name = sheet_name(len(sheets))
            sheet.save(tmp_dir / name, quality=quality, optimize=True)
            sheets.append(name)
            log.info("thumbnails: %d / %d images", start + count, len(paths))
        index = ThumbnailIndex(size=size, columns=columns, sheets=sheets, sample_ids=list(sample_ids))
        (tmp_dir / INDEX_NAME).write_text(json.dumps(index.to_json()))
    return index


def read_thumbnail_index(folder: str | Path) -> ThumbnailIndex:
    path = Path(folder) / INDEX_NAME
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise VlmprobeError(f"Thumbnail index {str(path)!r} is missing or unreadable: {error}.", "delete the folder and re-run the workflow.") from error
    if raw.get("format_version") != FORMAT_VERSION:
        raise VlmprobeError(f"Thumbnail index {str(path)!r} has format {raw.get('format_version')!r}, not {FORMAT_VERSION}.", "delete the folder and re-run the workflow.")
    return ThumbnailIndex(size=int(raw["size"]), columns=int(raw["columns"]), sheets=list(raw["sheets"]), sample_ids=list(raw["sample_ids"]))
