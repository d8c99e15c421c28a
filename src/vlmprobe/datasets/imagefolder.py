"""``imagefolder``: one sub-folder per class (BrainMR, BUSI, SARS-COV-2 CT downloads)."""

from __future__ import annotations

import fnmatch
import logging
from typing import Any

from vlmprobe.datasets.records import DatasetContext, Record, spec_value
from vlmprobe.errors import VlmprobeError
from vlmprobe.images import IMAGE_SUFFIXES

log = logging.getLogger(__name__)


def load_records(spec: dict[str, Any], ctx: DatasetContext) -> list[Record]:
    root = ctx.resolve(spec_value(spec, "root", ctx.name))
    if not root.is_dir():
        raise VlmprobeError(
            f"Dataset {ctx.name!r}: folder {str(root)!r} does not exist.",
            f"download the dataset there or correct `datasets: {ctx.name}: root:` in config.yaml.",
        )
    exclude = list(spec.get("exclude", []))
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise VlmprobeError(
            f"Dataset {ctx.name!r}: {str(root)!r} has no class sub-folders.",
            "an imagefolder dataset needs one sub-folder per class holding its images.",
        )
    records: list[Record] = []
    for class_dir in class_dirs:
        found = 0
        skipped = 0
        for path in sorted(p for p in class_dir.rglob("*") if p.is_file()):
            relative = path.relative_to(root).as_posix()
            if path.name.startswith(".") or any(fnmatch.fnmatch(path.name, pattern) for pattern in exclude):
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped += 1
                continue
            sample_id = relative.rsplit(".", 1)[0]
            records.append(Record(sample_id=sample_id, path=str(path.resolve()), labels=(class_dir.name,)))
            found += 1
        if skipped:
            log.info("dataset %s: ignored %d non-image file(s) in %s", ctx.name, skipped, class_dir)
        if not found:
            raise VlmprobeError(
                f"Dataset {ctx.name!r}: class folder {str(class_dir)!r} holds no images.",
                "add images to it or remove the empty folder.",
            )
    return records
