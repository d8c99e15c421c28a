"""What a dataset adapter returns: one :class:`Record` per image, before splitting."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Box:
    """A pixel bounding box of one finding; ``x1``/``y1`` are exclusive."""

    label: str
    x0: int
    y0: int
    x1: int
    y1: int


@dataclass
class Record:
    sample_id: str
    path: str
    labels: tuple[str, ...]
    boxes: tuple[Box, ...] = ()
    annotation_path: str | None = None
    """A mask image marking the finding (e.g. BUSI's ``*_mask.png``), for Grad-CAM scoring."""
    meta: dict[str, str] = field(default_factory=dict)
    """Free-form string metadata kept as ``meta_<key>`` columns (e.g. BreakHis subtype, magnification)."""


@dataclass(frozen=True)
class DatasetContext:
    """What an adapter may use besides its spec."""

    name: str
    seed: int
    data_dir: Path
    """Where built-in datasets write the images they generate (``results/datasets/{name}``)."""
    base_dir: Path
    """Relative dataset roots in the config resolve against this folder (the workflow's working directory)."""

    def resolve(self, value: str | Path) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)


def spec_value(spec: dict[str, Any], key: str, dataset: str) -> Any:
    """A required key of a dataset spec, or a clear error naming it."""
    from vlmprobe.errors import VlmprobeError

    if key not in spec or spec[key] in (None, ""):
        raise VlmprobeError(
            f"Dataset {dataset!r} (kind {spec.get('kind')!r}) has no {key!r} in config.yaml.",
            f"add `{key}:` under `datasets: {dataset}:`.",
        )
    return spec[key]
