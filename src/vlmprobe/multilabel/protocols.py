"""Published protocols of the multi-label study, beside our recommended one (``multilabel: protocol:``).

``vlmprobe`` (default) is the protocol documented in :mod:`vlmprobe.multilabel.metrics`, :mod:`vlmprobe.multilabel.linear_probe`,
:mod:`vlmprobe.multilabel.zero_shot` and :mod:`vlmprobe.multilabel.finetune`. ``sadman2025`` reproduces Sadman et al. (2025) as their
notebook ``evaluatingBiomedClIP_IUXRAY.ipynb`` (github.com/Nafiz95/BioVLM_Eval_CXR) runs it; its pieces live
here, each quoting the notebook:

* **Distances** (``compute_separability``): every test sample counts for ONE class, ``labels.argmax(1)`` --
  its first positive label in the notebook's class order (the CheXpert column order, "No Finding" last);
  centroids of those groups, intra = mean over classes of the mean Euclidean distance to the own centroid,
  inter = mean distance over centroid pairs, ratio = inter / (intra + 1e-9); silhouette with
  ``metric='cosine'``, Davies-Bouldin (Euclidean), Fisher ratio ``sb / (sw + 1e-9)`` -- all on raw embeddings.
* **Decisions** (``compute_metrics_v2(logits, y, 0.5)``): scores are scaled per row to [0, 1]
  (``(x - min) / (max - min + 1e-8)``) and a label is decided when its scaled score is ``> 0.5``; F1 (macro
  over all labels, zero_division 0), exact match, LRAP and coverage error are computed on the scaled scores.
* **lp** (``train_eval_biomedclip(mode="linearprobe")``): ``nn.Linear(d, C)`` (Xavier-uniform weight,
  PyTorch's default bias) on the frozen image embedding, unweighted BCE with logits, AdamW (lr 1e-4, weight
  decay 1e-2), cosine annealing over 10 epochs stepped per epoch, batches of 24 shuffled, early stopping on
  the validation BCE (improvement > 1e-4, patience 5), the best epoch's weights kept. Implemented in NumPy
  (:func:`fit_linear_head`), checked against ``torch.optim.AdamW`` in the tests.
* **zs** (``run_zero_shot``): the text tower encodes the bare class names (no template); scores are raw
  dot products of the unnormalised image and text embeddings (no cosine, no logit scale).
* **ft** (``train_eval_biomedclip(mode="finetune")``): :data:`FINETUNE` (see :mod:`vlmprobe.multilabel.finetune`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError

MULTILABEL_PROTOCOLS = ("vlmprobe", "sadman2025")
ROW_MINMAX_EPS = 1e-8
RATIO_EPS = 1e-9
DECISION_THRESHOLD = 0.5

LINEAR_PROBE: dict[str, Any] = {
    "head": "nn.Linear, xavier_uniform_ weight, default bias", "loss": "BCEWithLogitsLoss (unweighted, mean)",
    "optimizer": "AdamW", "lr": 1e-4, "weight_decay": 1e-2, "betas": (0.9, 0.999), "eps": 1e-8,
    "schedule": "CosineAnnealingLR(T_max=epochs), stepped per epoch", "epochs": 10, "batch_size": 24, "patience": 5,
    "min_improvement": 1e-4, "monitor": "validation BCE (mean of batch means)",
}
FINETUNE: dict[str, Any] = {
    "epochs": 10, "patience": 5, "batch_size": 24, "lr": 1e-5, "head_lr": 1e-5, "weight_decay": 1e-2, "monitor": "loss",
    "loss": "BCEWithLogitsLoss (unweighted)", "optimizer": "AdamW over encoder + head at lr 1e-4 x 0.1, re-created every epoch",
    "grad_clip": None, "drop_last": False, "decision": "row-min-max scaled logits > 0.5",
    "precision": "float16 autocast + GradScaler for training steps (CUDA); fp32 validation, test and embeddings",
}
"""The notebook's fine-tuning: ``lr=0.0001`` passed, ``AdamW(model.parameters(), lr=lr * 0.1)`` re-created (with
its cosine schedule) at the start of *every* epoch because the ``epoch == warmup_epochs + 1`` condition is
commented out -- so the learning rate is a constant 1e-5 for encoder and head and Adam's moments restart each
epoch; 10 epochs, patience 5, batches of 24, unweighted BCE, no gradient clipping. Precision: ``_train_epoch`` runs
under ``torch.cuda.amp.autocast`` (float16) with ``GradScaler(enabled=device.type == "cuda")``; ``_inference`` and
``extract_vit_embeddings`` run without autocast (fp32), and so does the zero-shot / frozen embedding
(``extract_image_embeddings``: one image at a time, ``torch.no_grad()`` only)."""



def check_protocol(protocol: str) -> str:
    if protocol not in MULTILABEL_PROTOCOLS:
        raise VlmprobeError(f"Unknown multi-label protocol {protocol!r}.", f"set `multilabel: protocol:` to one of {list(MULTILABEL_PROTOCOLS)}.")
    return protocol


# ------------------------------------------------------------------------------------------------
# Decisions
# ------------------------------------------------------------------------------------------------


def row_minmax(scores: np.ndarray) -> np.ndarray:
    """The notebook's ``_row_minmax``: each row scaled to [0, 1] by its own minimum and maximum."""
    x = np.asarray(scores, dtype=np.float64)
    low, high = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    return (x - low) / (high - low + ROW_MINMAX_EPS)


def row_minmax_decisions(scaled: np.ndarray, threshold: float = DECISION_THRESHOLD) -> np.ndarray:
    """``y_prob > threshold`` on row-min-max scaled scores (strict, as the notebook)."""
    return np.asarray(scaled) > threshold


DECISION = {"rule": "row-min-max > 0.5", "description": "scores scaled per row to [0, 1] (min-max), label decided when > 0.5 (Sadman et al. 2025)"}


# ------------------------------------------------------------------------------------------------
# Distances: one class per sample
# ------------------------------------------------------------------------------------------------


def class_priority(classes: Sequence[str], spec: dict[str, Any] | None) -> list[int]:
    """Column indices of ``classes`` in the order ``argmax`` scans them: the label CSV's column order.

    The manifest keeps classes sorted; the notebook's ``labels.argmax(1)`` runs over its CheXpert column order
    (``label_columns``, default :data:`~vlmprobe.labels.CHEXPERT_CLASSES`, the ``empty_label`` where
    that list has it, else last). Classes outside that list follow in sorted order.
    """
    from vlmprobe.labels import CHEXPERT_CLASSES

    spec = spec or {}
    order = list(spec.get("label_columns", CHEXPERT_CLASSES)) if spec.get("labels_csv") else []
    empty = spec.get("empty_label", "No Finding")
    if order and empty not in order:
        order.append(empty)
    ranked = [name for name in order if name in classes] + sorted(name for name in classes if name not in order)
    return [list(classes).index(name) for name in ranked]


def first_positive(indicator: np.ndarray, priority: Sequence[int] | None = None) -> np.ndarray:
    """The notebook's ``labels.argmax(1)`` (columns in ``priority`` order): a class index per sample."""
    y = np.asarray(indicator, dtype=bool)
    priority = list(range(y.shape[1])) if priority is None else list(priority)
    if not y.any(axis=1).all():
        raise ValueError("every sample needs a positive label for a single-class assignment")
    return np.asarray(priority)[np.argmax(y[:, priority], axis=1)]


def single_class_indicator(indicator: np.ndarray, priority: Sequence[int] | None = None) -> np.ndarray:
    """One-hot (n, C) matrix of :func:`first_positive`, only the columns of classes that occur."""
    groups = first_positive(indicator, priority)
    present = np.unique(groups)
    return groups[:, None] == present[None, :]


def single_class_distances(embeddings: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Inter / intra / ratio as ``compute_separability``, over the classes that occur (their label order)."""
    x = np.asarray(embeddings, dtype=np.float64)
    present = np.unique(groups)
    means = np.stack([x[groups == c].mean(axis=0) for c in present])
    intra = float(np.mean([np.linalg.norm(x[groups == c] - means[i], axis=1).mean() for i, c in enumerate(present)]))
    pairs = [np.linalg.norm(means[i] - means[j]) for i in range(len(means)) for j in range(i + 1, len(means))]
    inter = float(np.mean(pairs)) if pairs else math.nan
    return {"inter_class_distance": inter, "intra_class_distance": intra, "distance_ratio": inter / (intra + RATIO_EPS)}


def stratified_bootstrap_weights(groups: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n) multiplicities resampling each group's samples within the group (its size kept).

    The bootstrap of the single-class distances: every resample has every class, so no resample is dropped.
    Seeded apart from the ordinary resamples, and depends only on (groups, n_resamples, seed).
    """
    groups = np.asarray(groups)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0xB007, 1)))
    weights = np.zeros((n_resamples, len(groups)), dtype=np.int32)
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        weights[:, members] = rng.multinomial(len(members), np.full(len(members), 1.0 / len(members)), size=n_resamples)
    return weights


def single_class_separation(embeddings: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """Silhouette (cosine), Davies-Bouldin and Fisher ratio of ``compute_separability`` (None when undefined)."""
    from sklearn.metrics import davies_bouldin_score, silhouette_score

    x = np.asarray(embeddings, dtype=np.float64)
    present = np.unique(groups)
    result: dict[str, Any] = {"separation_n_samples": int(len(x)), "separation_n_classes": int(len(present))}
    if 2 <= len(present) <= len(x) - 1:
        result["silhouette"] = float(silhouette_score(x, groups, metric="cosine"))
        result["davies_bouldin"] = float(davies_bouldin_score(x, groups))
    else:
        result["silhouette"] = result["davies_bouldin"] = None
    overall = x.mean(axis=0)
    between = sum(int((groups == c).sum()) * float(np.sum((x[groups == c].mean(axis=0) - overall) ** 2)) for c in present)
    within = sum(float(((x[groups == c] - x[groups == c].mean(axis=0)) ** 2).sum()) for c in present)
    result["fisher_ratio"] = between / (within + RATIO_EPS)
    return result


# ------------------------------------------------------------------------------------------------
# The linear probe: nn.Linear + BCE + AdamW + cosine schedule + early stopping, in NumPy
# ------------------------------------------------------------------------------------------------


def _bce_with_logits(logits: np.ndarray, target: np.ndarray) -> float:
    """``F.binary_cross_entropy_with_logits`` (mean), the stable form."""
    return float(np.mean(np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits)))))


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * logits))


def batch_mean_loss(x: np.ndarray, y: np.ndarray, weight: np.ndarray, bias: np.ndarray, batch_size: int) -> float:
    """The notebook's ``_inference`` loss: the mean over batches (in order) of each batch's mean BCE."""
    losses = [_bce_with_logits(x[s : s + batch_size] @ weight.T + bias, y[s : s + batch_size]) for s in range(0, len(x), batch_size)]
    return float(np.mean(losses))


def initial_head(d: int, n_classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``nn.Linear(d, C)`` then ``xavier_uniform_(weight)``: weight ~ U(+-sqrt(6 / (d + C))), bias ~ U(+-1 / sqrt(d))."""
    bound = math.sqrt(6.0 / (d + n_classes))
    return rng.uniform(-bound, bound, size=(n_classes, d)), rng.uniform(-1 / math.sqrt(d), 1 / math.sqrt(d), size=n_classes)


@dataclass
class HeadFit:
    weight: np.ndarray
    bias: np.ndarray
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)


def fit_linear_head(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    batch_orders: Sequence[np.ndarray],
    lr: float = LINEAR_PROBE["lr"],
    weight_decay: float = LINEAR_PROBE["weight_decay"],
    patience: int = LINEAR_PROBE["patience"],
    batch_size: int = LINEAR_PROBE["batch_size"],
) -> HeadFit:
    """The notebook's linear-probe loop from a given initialisation; epoch ``e`` visits ``batch_orders[e]``.

    Per batch: mean BCE, AdamW step (``p *= 1 - lr * wd``, then Adam with bias correction, betas (0.9, 0.999),
    eps 1e-8). After each epoch: validation loss, then the cosine schedule's step
    (``lr_e = lr * (1 + cos(pi * e / T)) / 2``, T = number of epochs), then the early-stopping test.
    """
    x, y = np.asarray(train_x, dtype=np.float64), np.asarray(train_y, dtype=np.float64)
    vx, vy = np.asarray(val_x, dtype=np.float64), np.asarray(val_y, dtype=np.float64)
    w, b = np.array(weight, dtype=np.float64), np.array(bias, dtype=np.float64)
    beta1, beta2 = LINEAR_PROBE["betas"]
    eps = LINEAR_PROBE["eps"]
    m_w, v_w, m_b, v_b = np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)
    epochs, step = len(batch_orders), 0
    best_loss, bad, best = math.inf, 0, (w.copy(), b.copy(), 0)
    history = []
    for epoch, order in enumerate(batch_orders):
        current_lr = lr * (1 + math.cos(math.pi * epoch / epochs)) / 2
        losses = []
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            logits = x[rows] @ w.T + b
            losses.append(_bce_with_logits(logits, y[rows]))
            grad = (_sigmoid(logits) - y[rows]) / logits.size  # d mean-BCE / d logits
            g_w, g_b = grad.T @ x[rows], grad.sum(axis=0)
            step += 1
            for p, g, m, v in ((w, g_w, m_w, v_w), (b, g_b, m_b, v_b)):
                p *= 1 - current_lr * weight_decay
                m *= beta1
                m += (1 - beta1) * g
                v *= beta2
                v += (1 - beta2) * g * g
                denom = np.sqrt(v) / math.sqrt(1 - beta2**step) + eps
                p -= (current_lr / (1 - beta1**step)) * m / denom
        val_loss = batch_mean_loss(vx, vy, w, b, batch_size)
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val_loss, "lr": current_lr})
        if val_loss < best_loss - LINEAR_PROBE["min_improvement"]:
            best_loss, bad, best = val_loss, 0, (w.copy(), b.copy(), epoch + 1)
        else:
            bad += 1
            if bad >= patience:
                break
    return HeadFit(weight=best[0], bias=best[1], best_epoch=best[2], epochs_run=len(history), history=history)


def train_linear_probe(train_x, train_y, val_x, val_y, seed: int, epochs: int = LINEAR_PROBE["epochs"]) -> HeadFit:
    """:func:`fit_linear_head` with a seeded initialisation and per-epoch shuffles (NumPy's generator)."""
    rng = np.random.default_rng(seed)
    weight, bias = initial_head(np.asarray(train_x).shape[1], np.asarray(train_y).shape[1], rng)
    orders = [rng.permutation(len(train_x)) for _ in range(epochs)]
    return fit_linear_head(train_x, train_y, val_x, val_y, weight, bias, orders)
