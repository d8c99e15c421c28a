"""Fine-tuning settings, output paths and the constants of the protocol; the settings a run really uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmprobe.errors import VlmprobeError
from vlmprobe.models import FAMILIES, family_of

FORMAT_VERSION = 1
MAX_POS_WEIGHT = 100.0
MAX_GRAD_NORM = 1.0
MIN_IMPROVEMENT = 1e-4
EMBED_SEED = 0
"""The torch seed of the embed job (``vlmprobe.embed.embed_manifest``'s default) when it loads a model."""


@dataclass(frozen=True)
class FinetuneSettings:
    epochs: int = 10
    patience: int = 3
    batch_size: int = 32
    lr: float = 1e-4
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    image_size: int | None = None
    validation_fold: int = 0
    threshold: str | float = "tuned"
    monitor: str = "average_precision"
    protocol: str = "vlmprobe"

    @classmethod
    def from_config(cls, block: dict[str, Any]) -> FinetuneSettings:
        known = {name: block[name] for name in cls.__dataclass_fields__ if name in block}
        return cls(**known)


@dataclass(frozen=True)
class FinetuneOutputs:
    encoder: Path
    head: Path
    info: Path
    embeddings: Path
    predictions: Path

    @property
    def resume_dir(self) -> Path:
        return Path(self.info).parent / "resume"


def checked_settings(model_id: str, spec: dict[str, Any], settings: FinetuneSettings) -> tuple[FinetuneSettings, bool, dict[str, Any]]:
    """``(settings, paper, spec_used)``: the settings this run uses (protocol sadman2025 replaces the configured
    ones), whether it follows that protocol, and the spec the encoder is built with (``image_size`` override)."""
    from dataclasses import replace

    from vlmprobe.models import check_spec
    from vlmprobe.multilabel.protocols import FINETUNE, check_protocol

    paper = check_protocol(settings.protocol) == "sadman2025"
    if paper:
        settings = replace(settings, **{key: FINETUNE[key] for key in ("epochs", "patience", "batch_size", "lr", "head_lr", "weight_decay", "monitor")})
    if settings.monitor not in ("average_precision", "loss"):
        raise VlmprobeError(f"Unknown early-stopping monitor {settings.monitor!r}.", "set `multilabel: finetune: monitor:` to average_precision or loss.")
    if not family_of(model_id, spec).trainable:
        trainable = sorted(name for name, family in FAMILIES.items() if family.trainable)
        raise VlmprobeError(
            f"Model {model_id!r} (family {spec.get('family')!r}) cannot be fine-tuned: its family declares no trainable image tower.",
            f"fine-tune only models of the families {trainable} (`multilabel: finetune: models:`).",
        )
    spec_used = dict(spec, image_size=int(settings.image_size)) if settings.image_size else dict(spec)
    check_spec(model_id, spec_used)
    return settings, paper, spec_used

