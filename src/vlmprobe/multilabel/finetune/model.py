"""The model being fine-tuned: the encoder with its trainable tower unfrozen, a fresh head, the loss and AdamW."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from vlmprobe.multilabel.finetune.rows import LabelledImages, Rows
from vlmprobe.multilabel.finetune.settings import EMBED_SEED, MAX_POS_WEIGHT, FinetuneSettings


def trainable_prefix(encoder) -> str:
    """State-dict keys of ``encoder.image_module`` that fine-tuning trains and saves."""
    return "clip.visual." if "open_clip_model" in encoder.extras else ""


def configure_torch(device: str, threads: int | None, num_workers: int | None, spec_used: dict[str, Any]) -> tuple[str, int, Any]:
    """``(device, num_workers, autocast dtype or None)``; sets torch's threads and deterministic algorithms."""
    import torch

    from vlmprobe.runtime import autocast_dtype, resolve_device

    device = resolve_device(device)
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    if num_workers is None:
        num_workers = 0 if device == "cpu" else min(8, threads - 1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    return device, num_workers, autocast_dtype(device, spec_used.get("precision", "auto"))


@dataclass
class Run:
    """The model being fine-tuned and everything a training or validation step needs."""

    settings: FinetuneSettings
    paper: bool
    device: str
    amp_dtype: Any
    encoder: Any
    module: Any  # encoder.image_module, the part that trains
    prefix: str
    trainable: list[Any]
    head: Any
    criterion: Any
    loss_weights: dict[str, Any]
    train_data: LabelledImages
    val_data: LabelledImages
    loader_options: dict[str, Any]
    optimizer: Any = None
    scaler: Any = None

    def new_optimizer(self):
        import torch

        return torch.optim.AdamW(
            [{"params": self.trainable, "lr": self.settings.lr}, {"params": list(self.head.parameters()), "lr": self.settings.head_lr}],
            weight_decay=self.settings.weight_decay,
        )

    def autocast(self, training: bool = True):
        """Mixed precision for a training step, and for validation except under protocol sadman2025 (the notebook's
        ``_inference`` runs without autocast)."""
        import torch

        if self.amp_dtype is not None and (training or not self.paper):
            return torch.autocast(device_type="cuda", dtype=self.amp_dtype)
        return torch.autocast(device_type="cpu", enabled=False)


def build_run(
    model_id: str,
    spec_used: dict[str, Any],
    rows: Rows,
    settings: FinetuneSettings,
    paper: bool,
    seed: int,
    device: str,
    amp_dtype: Any,
    num_workers: int,
) -> Run:
    """Encoder (its trainable tower unfrozen), a fresh head, the loss, AdamW and the loss scaler."""
    import torch

    from vlmprobe.models import load_encoder

    # the starting weights of a model without pretrained ones are those the embed job gets (its seed 0),
    # so fine-tuning starts from the encoder that zs and lp see; ``seed`` drives the training itself
    torch.manual_seed(EMBED_SEED)
    encoder = load_encoder(model_id, spec_used, device)
    module = encoder.image_module
    prefix = trainable_prefix(encoder)
    trainable = []
    for name, parameter in module.named_parameters():
        parameter.requires_grad_(name.startswith(prefix))
        if name.startswith(prefix):
            trainable.append(parameter)
    torch.manual_seed(seed)  # the head's initialisation does not depend on how much the model consumed
    head = torch.nn.Linear(encoder.embed_dim, len(rows.classes)).to(device)
    if paper:
        torch.nn.init.xavier_uniform_(head.weight)
    criterion, targets, loss_weights = make_loss(rows, paper, device)

    def subset(mask: np.ndarray) -> LabelledImages:
        chosen = np.flatnonzero(mask)
        return LabelledImages([rows.paths[i] for i in chosen], targets[torch.as_tensor(chosen)], encoder.preprocess)

    run = Run(
        settings=settings,
        paper=paper,
        device=device,
        amp_dtype=amp_dtype,
        encoder=encoder,
        module=module,
        prefix=prefix,
        trainable=trainable,
        head=head,
        criterion=criterion,
        loss_weights=loss_weights,
        train_data=subset(rows.is_train),
        val_data=subset(rows.is_val),
        loader_options={"num_workers": num_workers, "pin_memory": device.startswith("cuda"), "persistent_workers": False},
    )
    run.optimizer = run.new_optimizer()
    run.scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    return run


def make_loss(rows: Rows, paper: bool, device: str) -> tuple[Any, Any, dict[str, Any]]:
    """``(criterion, targets of every manifest row, loss weights for finetune.json)``, weights from the training rows."""
    import torch

    train_indicator = rows.indicator[rows.is_train]
    if paper:
        criterion = torch.nn.BCEWithLogitsLoss() if rows.multilabel else torch.nn.CrossEntropyLoss()
        targets = torch.as_tensor(rows.indicator, dtype=torch.float32) if rows.multilabel else torch.as_tensor(np.argmax(rows.indicator, axis=1), dtype=torch.long)
        return criterion, targets, {"unweighted": True}
    if rows.multilabel:
        positives = train_indicator.sum(axis=0)
        pos_weight = np.clip((len(train_indicator) - positives) / np.maximum(positives, 1), 1.0 / MAX_POS_WEIGHT, MAX_POS_WEIGHT)
        criterion = torch.nn.BCEWithLogitsLoss(pos_weight=torch.as_tensor(pos_weight, dtype=torch.float32, device=device))
        targets = torch.as_tensor(rows.indicator, dtype=torch.float32)
        return criterion, targets, {"pos_weight": dict(zip(rows.classes, map(float, pos_weight), strict=True))}
    counts = train_indicator.sum(axis=0)
    class_weight = len(train_indicator) / (len(rows.classes) * np.maximum(counts, 1))
    criterion = torch.nn.CrossEntropyLoss(weight=torch.as_tensor(class_weight, dtype=torch.float32, device=device))
    targets = torch.as_tensor(np.argmax(rows.indicator, axis=1), dtype=torch.long)
    return criterion, targets, {"class_weight": dict(zip(rows.classes, map(float, class_weight), strict=True))}

