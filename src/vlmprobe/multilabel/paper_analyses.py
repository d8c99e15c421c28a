"""The analyses of Sadman et al.'s notebook beyond its results table (protocol ``sadman2025``), each as the notebook computes it.

One job per (dataset, model) reads the settings' predictions, the heads and the embedding tables, recomputes each
setting's raw scores (checked against the row-min-max scores the predictions hold) and writes, in
``results/multilabel/{dataset}/{model}/sadman2025/``: ``analyses.json`` and the figures below. Cells are named by
their id in ``evaluatingBiomedClIP_IUXRAY.ipynb`` (github.com/Nafiz95/BioVLM_Eval_CXR); the readings taken where
the notebook is ambiguous are listed in docs/multilabel.md ("The notebook's further analyses").

* **Threshold sweep** (cell ``d58bae21``): ``compute_metrics_v2(logits, y_true, t)`` for ``t`` in
  ``np.arange(0.20, 0.91, 0.05)``: macro F1 of row-min-max scores ``> t``, LRAP and coverage error of the row-min-max
  scores (which do not depend on ``t``: the notebook's LRAP and coverage panels are flat lines). The notebook sweeps
  zs; every setting is swept here, zs first. ``threshold_sweep.png``: its 3 x 1 figure.
* **Score maps** (``logits_to_prob``, ``custom_inference``): row-min-max (the protocol's decisions), "cosine"
  ``(s / ||s|| + 1) / 2`` with ``||s||`` the norm of the sample's score row (what ``logits_to_prob(mode="cosine")``
  computes), ``sigmoid(s / tau)`` with tau 50 (the Grad-CAM titles) and 80 (``compute_metrics_v4`` and
  ``compute_domain_metrics`` inside ``train_eval_biomedclip``).
* **Per class and per domain P / R / F1 at 0.5** (``compute_metrics_v4``, ``compute_domain_metrics``; cells
  ``bab3e3d2``, ``26008411``, ``6070bf9f``): a domain (Cardiovascular, Pulmonary, Skeletal, Device) is true when any of
  its classes is, decided when any of its classes' scores is ``> 0.5`` (the notebook's ``max`` of the domain's
  probabilities ``> 0.5`` and its ``any`` of the decisions are the same rule). Every setting under every score map;
  ``printed`` marks what the notebook prints: zs under "cosine", lp / ft under sigmoid tau 80.
* **Class counts** (cells ``50b664ef``, ``d5a140f2``): samples per class over the whole table, sorted descending,
  grey bars labelled with their counts: ``class_counts.png``; the training split's counts (cell ``6b4a4626``) in the JSON.
* **Loss curves** (cells ``679f5718``, ``16b72819``): train and validation BCE per epoch of ft and lp:
  ``loss_curves.png``.
* **Projections** (cell ``42831ead``): PCA, UMAP (``random_state=42``) and TriMap (``n_random=42``) of the test
  embeddings, at most 100 samples per class, in a 3 x 3 figure (rows: all labels / No Finding vs abnormal / the
  four disease domains); UMAP and TriMap standardised with the scaler fitted on PCA, as the notebook does:
  ``projections_frozen.png`` (zs and lp share the frozen tower) and ``projections_ft.png``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError

log = logging.getLogger(__name__)

THRESHOLDS = np.arange(0.20, 0.91, 0.05)
"""The notebook's ``ths = np.arange(0.20, 0.91, 0.05)``: 0.20, 0.25, ..., 0.90 (15 values)."""
DOMAINS: dict[str, tuple[str, ...]] = {
    "Cardiovascular": ("Enlarged Cardiomediastinum", "Cardiomegaly"),
    "Pulmonary": ("Pneumonia", "Consolidation", "Atelectasis", "Pneumothorax", "Pleural Other", "Pleural Effusion", "Edema", "Lung Opacity", "Lung Lesion"),
    "Skeletal": ("Fracture",),
    "Device": ("Support Devices",),
}
"""``domain_categories`` of the notebook ("No Finding" belongs to none)."""
NO_FINDING = "No Finding"
SCORE_MAPS: dict[str, dict[str, Any]] = {
    "row-min-max": {"mode": "minmax", "tau": None, "formula": "(s - min) / (max - min + 1e-8) per row (the protocol's decisions)"},
    "cosine": {"mode": "cosine", "tau": None, "formula": "(s / (||s|| + 1e-8) + 1) / 2, ||s|| the norm of the score row"},
    "sigmoid-50": {"mode": "sigmoid", "tau": 50.0, "formula": "sigmoid(s / 50) (the Grad-CAM titles)"},
    "sigmoid-80": {"mode": "sigmoid", "tau": 80.0, "formula": "sigmoid(s / 80)"},
}
PRINTED = {"zs": "cosine", "lp": "sigmoid-80", "ft": "sigmoid-80"}
"""The score map whose P / R / F1 the notebook prints per setting (zs: cells bab3e3d2 / 26008411; lp, ft: train_eval_biomedclip)."""
PER_CLASS_LIMIT = 100
"""``N = 100`` samples per category in the projections."""
SEED = 42


# ------------------------------------------------------------------------------------------------
# Scores and decisions
# ------------------------------------------------------------------------------------------------


def row_minmax(scores: np.ndarray) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    low, high = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    return (x - low) / (high - low + 1e-8)


def score_map(logits: np.ndarray, name: str) -> np.ndarray:
    """The notebook's ``logits_to_prob`` (and ``_row_minmax``) under one of :data:`SCORE_MAPS`."""
    from scipy.special import expit

    x = np.asarray(logits, dtype=np.float64)
    spec = SCORE_MAPS[name]
    if spec["mode"] == "minmax":
        return row_minmax(x)
    if spec["mode"] == "cosine":
        return (x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8) + 1) / 2
    return expit(x / spec["tau"])


def threshold_sweep(logits: np.ndarray, y_true: np.ndarray, thresholds: Sequence[float] = THRESHOLDS) -> list[dict[str, float]]:
    """``compute_metrics_v2`` at each threshold: macro F1 (zero_division 0), LRAP and coverage error on row-min-max scores."""
    from sklearn.metrics import coverage_error, f1_score, label_ranking_average_precision_score

    prob = row_minmax(logits)
    y = np.asarray(y_true, dtype=int)
    lrap, coverage = float(label_ranking_average_precision_score(y, prob)), float(coverage_error(y, prob))
    return [
        {"threshold": round(float(t), 2), "f1_macro": float(f1_score(y, (prob > t).astype(int), average="macro", zero_division=0)), "lrap": lrap, "coverage_error": coverage}
        for t in thresholds
    ]


def per_class_prf(prob: np.ndarray, y_true: np.ndarray, classes: Sequence[str], threshold: float = 0.5) -> dict[str, dict[str, float]]:
    """``compute_metrics_v4``: per class precision / recall / F1 of ``prob > threshold`` (zero_division 0)."""
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, _ = precision_recall_fscore_support(np.asarray(y_true, dtype=int), (np.asarray(prob) > threshold).astype(int), average=None, zero_division=0)
    return {name: {"precision": float(a), "recall": float(b), "f1": float(c)} for name, a, b, c in zip(classes, p, r, f, strict=True)}


def domain_prf(prob: np.ndarray, y_true: np.ndarray, classes: Sequence[str], threshold: float = 0.5) -> dict[str, dict[str, Any]]:
    """``compute_domain_metrics``: per domain, true = any of its classes, decided = any of its classes' ``prob > threshold``.

    Domains none of whose classes are among ``classes`` are reported with ``n_classes`` 0 and no scores.
    """
    from sklearn.metrics import precision_recall_fscore_support

    y = np.asarray(y_true, dtype=bool)
    decided = np.asarray(prob) > threshold
    out: dict[str, dict[str, Any]] = {}
    for domain, names in DOMAINS.items():
        columns = [list(classes).index(name) for name in names if name in classes]
        if not columns:
            out[domain] = {"precision": None, "recall": None, "f1": None, "support": 0, "n_classes": 0}
            continue
        truth, pred = y[:, columns].any(axis=1).astype(int), decided[:, columns].any(axis=1).astype(int)
        p, r, f, _ = precision_recall_fscore_support(truth, pred, average="binary", zero_division=0)
        out[domain] = {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(truth.sum()), "n_classes": len(columns)}
    return out


def score_map_table(logits: np.ndarray, y_true: np.ndarray, classes: Sequence[str], setting: str) -> list[dict[str, Any]]:
    """One row per score map: macro P / R / F1 over the classes at 0.5, the per-class and per-domain P / R / F1."""
    rows = []
    for name, spec in SCORE_MAPS.items():
        prob = score_map(logits, name)
        per_class = per_class_prf(prob, y_true, classes)
        rows.append(
            {
                "score_map": name, "formula": spec["formula"], "printed": PRINTED.get(setting) == name,
                **{f"{k}_macro": float(np.mean([v[k] for v in per_class.values()])) for k in ("precision", "recall", "f1")},
                "labels_per_sample": float((prob > 0.5).sum(axis=1).mean()),
                "per_class": per_class, "per_domain": domain_prf(prob, y_true, classes),
            }
        )  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------------
# Counts and projections
# ------------------------------------------------------------------------------------------------


def notebook_order(classes: Sequence[str]) -> list[str]:
    """``classes`` in the notebook's order (CheXpert's columns, "No Finding" last), others after, sorted."""
    from vlmprobe.labels import CHEXPERT_CLASSES

    return [c for c in CHEXPERT_CLASSES if c in classes] + sorted(c for c in classes if c not in CHEXPERT_CLASSES)


def targets(labels: Sequence[Sequence[str]], classes: Sequence[str]) -> list[list[str]]:
    """The notebook's ``target`` column: each sample's labels in the notebook's class order ("No Finding" when none)."""
    order = notebook_order(classes)
    return [[c for c in order if c in set(row)] or [NO_FINDING] for row in labels]


def class_counts(labels: Sequence[Sequence[str]], classes: Sequence[str]) -> list[tuple[str, int]]:
    """Samples per class (``len(df[df['target'].apply(lambda x: disease in x)])``), sorted descending as the bar chart."""
    rows = targets(labels, classes)
    counts = [(name, sum(name in row for row in rows)) for name in notebook_order(list(classes) + ([NO_FINDING] if NO_FINDING not in classes else []))]
    return sorted(counts, key=lambda item: item[1], reverse=True)


def projection_selection(labels: Sequence[Sequence[str]], classes: Sequence[str], limit: int = PER_CLASS_LIMIT) -> dict[str, Any]:
    """Cell ``42831ead``'s selection: per category (the notebook's order) the first ``limit`` samples that have it,
    concatenated (a sample with several labels appears once per label, as there); each point coloured by its
    sample's first label (``target[0]``), No Finding vs abnormal by that label, and its disease domain (-1: none)."""
    rows = targets(labels, classes)
    categories = notebook_order(sorted({c for row in rows for c in row} | set(classes)))
    indices = [i for category in categories for i in [j for j, row in enumerate(rows) if category in row][:limit]]
    domain_of = {name: d for d, (_, names) in enumerate(DOMAINS.items()) for name in names}
    return {
        "indices": indices,
        "categories": categories,
        "all_labels": [categories.index(rows[i][0]) for i in indices],
        "binary_labels": [0 if rows[i][0] == NO_FINDING else 1 for i in indices],
        "domain_labels": [domain_of.get(rows[i][0], -1) for i in indices],
    }


def _seed_numba(seed: int) -> None:
    """TriMap draws its random triplets with numba's generator: seed it (one thread, so the draw is one stream)."""
    import numba

    numba.set_num_threads(1)

    @numba.njit
    def seed_numba(value):
        np.random.seed(value)

    seed_numba(seed)


def projections(embeddings: np.ndarray, seed: int = SEED) -> dict[str, Any]:
    """PCA, UMAP and TriMap (2-D) of ``embeddings`` as cell ``42831ead``, each standardised by the scaler fitted on PCA.

    UMAP takes ``random_state=seed`` as there; TriMap's ``n_random=42`` is its number of random triplets per point,
    not a seed, so the notebook's TriMap is unseeded: numba's generator is seeded with ``seed`` here. Fewer than
    15 points leave TriMap out (its 12 inlier neighbours per point need more): ``None`` with the reason.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(embeddings, dtype=np.float32)
    pca = PCA(n_components=2).fit_transform(x)
    scaler = StandardScaler().fit(pca)
    out: dict[str, Any] = {"pca": scaler.transform(pca), "umap": None, "trimap": None, "notes": {}}
    if len(x) >= 4:
        import umap

        out["umap"] = scaler.transform(umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(x) - 1)).fit_transform(x))
    else:
        out["notes"]["umap"] = f"{len(x)} points: too few for UMAP"
    if len(x) >= 15:
        import trimap

        _seed_numba(seed)
        out["trimap"] = scaler.transform(trimap.TRIMAP(n_dims=2, n_random=42).fit_transform(x))
    else:
        out["notes"]["trimap"] = f"{len(x)} points: too few for TriMap (12 inliers per point)"
    return out


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def sweep_figure(sweeps: Mapping[str, list[dict[str, float]]], title: str):
    """The notebook's 3 x 1 figure (figsize 12 x 8): macro F1, LRAP, coverage error against the threshold, a line per setting."""
    plt = _pyplot()
    figure, axes = plt.subplots(3, 1, figsize=(12, 8))
    panels = (("f1_macro", "Macro-F1 (higher is better)", "F1"), ("lrap", "LRAP (higher is better)", "LRAP"),
              ("coverage_error", "Coverage Error (lower is better)", "coverage error"))  # fmt: skip
    for ax, (key, heading, ylabel) in zip(axes, panels, strict=True):
        for setting, rows in sweeps.items():
            ax.plot([r["threshold"] for r in rows], [r[key] for r in rows], marker="o", label=setting)
        ax.set_title(heading)
        ax.set_xlabel("threshold")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


def class_count_figure(counts: Sequence[tuple[str, int]], title: str):
    """Cell ``d5a140f2``: grey bars sorted descending, each labelled with its count."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(10, 6))
    names, values = zip(*counts) if counts else ((), ())
    bars = ax.bar(names, values, color="grey")
    for bar in bars:
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{int(bar.get_height())}", ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("Sample Count")
    ax.set_title(f"Number of Samples per Disease ({title})")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right")
    figure.tight_layout(pad=0)
    return figure


def loss_figure(histories: Mapping[str, list[dict[str, Any]]], title: str):
    """Cells ``679f5718`` / ``16b72819``: train and validation loss per epoch (x: epoch index from 0), one panel per setting."""
    plt = _pyplot()
    settings = list(histories) or ["none"]
    figure, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 4), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        history = histories.get(setting, [])
        ax.plot([h["train_loss"] for h in history], label="train loss")
        ax.plot([h["val_loss"] for h in history], label="val loss")
        ax.legend()
        ax.set_xlabel("epoch")
        ax.set_title(setting)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


def projection_figure(result: Mapping[str, Any], selection: Mapping[str, Any], title: str):
    """Cell ``42831ead``'s 3 x 3 figure (18 x 18 in): PCA / UMAP / TriMap by all labels (tab20), No Finding (green)
    vs abnormal (red), and the disease domains (tab10, samples without a domain left out)."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    categories = selection["categories"]
    cmap_all, cmap_domain = plt.get_cmap("tab20", len(categories)), plt.get_cmap("tab10", 4)
    all_colours = [cmap_all(label / len(categories)) for label in selection["all_labels"]]
    binary_colours = ["green" if label == 0 else "red" for label in selection["binary_labels"]]
    domains = np.asarray(selection["domain_labels"], dtype=int)
    valid = domains != -1
    domain_colours = [cmap_domain(int(label)) for label in domains[valid]]
    figure, axes = plt.subplots(3, 3, figsize=(18, 18))
    methods = (("pca", "PCA", "PCA Component"), ("umap", "UMAP", "UMAP Dimension"), ("trimap", "TriMap", "TriMap Dimension"))
    rows = (("All Labels", None, all_colours), ("No Finding vs Abnormal", None, binary_colours), ("Disease Domains", valid, domain_colours))
    for r, (row_title, mask, colours) in enumerate(rows):
        for c, (key, name, axis) in enumerate(methods):
            ax = axes[r, c]
            points = result.get(key)
            ax.set_title(f"{name} - {row_title}")
            ax.set_xlabel(f"{axis} 1")
            ax.set_ylabel(f"{axis} 2")
            if points is None:
                ax.text(0.5, 0.5, result.get("notes", {}).get(key, "not computed"), ha="center", va="center", transform=ax.transAxes)
                continue
            points = np.asarray(points)[mask] if mask is not None else np.asarray(points)
            if len(points):
                ax.scatter(points[:, 0], points[:, 1], c=colours, s=80, alpha=0.8)

    def handle(label, colour):
        return Line2D([0], [0], marker="o", color="w", label=label, markersize=10, markerfacecolor=colour)

    axes[0, 2].legend(handles=[handle(name, cmap_all(i / len(categories))) for i, name in enumerate(categories)], bbox_to_anchor=(1.05, 1), loc="upper left")
    axes[1, 2].legend(handles=[handle(NO_FINDING, "green"), handle("Abnormal", "red")], bbox_to_anchor=(1.05, 1), loc="upper left")
    axes[2, 2].legend(handles=[handle(name, cmap_domain(i)) for i, name in enumerate(DOMAINS)], bbox_to_anchor=(1.05, 1), loc="upper left")
    figure.suptitle(title, fontsize=12)
    figure.tight_layout(pad=0, rect=(0, 0, 1, 0.97))  # the notebook's pad=0, below the title
    return figure


# ------------------------------------------------------------------------------------------------
# The job
# ------------------------------------------------------------------------------------------------


def label_table_order(indices, source_rows) -> list[int]:
    """Row ``indices`` in the label CSV's row order (``meta_source_row``; the manifest's order without that column)."""
    indices = [int(i) for i in indices]
    if source_rows is None:
        return indices
    return sorted(indices, key=lambda i: (int(source_rows[i]) if source_rows[i] not in (None, "") else i, i))


def _checked(raw: np.ndarray, stored: np.ndarray, setting: str, source: str) -> np.ndarray:
    if raw.shape != stored.shape or not np.allclose(row_minmax(raw), stored, atol=1e-6):
        raise VlmprobeError(
            f"The {setting} scores recomputed from {source} do not match its predictions' row-min-max scores.",
            f"delete results of the {setting} setting and re-run (its files come from different runs).",
        )
    return raw


def run_paper_analyses(
    manifest_path,
    embedding_path,
    predictions: Mapping[str, str],
    out_dir,
    *,
    lp_head: str | None = None,
    ft_head: str | None = None,
    ft_embedding: str | None = None,
    ft_info: str | None = None,
    expected_spec: dict[str, Any] | None = None,
    dataset: str = "",
    model: str = "",
    seed: int = SEED,
) -> dict[str, Any]:
    """The job: every analysis above for the settings in ``predictions`` (setting -> predictions file)."""
    from vlmprobe.formats.embeddings import aligned
    from vlmprobe.formats.heads import load_head
    from vlmprobe.formats.predictions import read_predictions
    from vlmprobe.io import save_figure, write_json

    manifest, matrix, meta, _ = aligned(manifest_path, embedding_path, expected_spec)
    classes = list(meta["classes"])
    labels = [list(row) for row in manifest["labels"].to_list()]
    split = np.asarray(manifest["split"].to_list())
    is_test = split == "test"
    # the notebook's test_df keeps the label CSV's row order (the projections take the first 100 per class in it)
    order = label_table_order(np.flatnonzero(is_test), manifest["meta_source_row"].to_list() if "meta_source_row" in manifest.columns else None)
    test_labels = [labels[i] for i in order]
    y_test = np.asarray([[c in set(row) for c in classes] for row in test_labels], dtype=int)
    frozen_test = np.asarray(matrix[order], dtype=np.float64)
    tuned_test = None
    if ft_embedding:
        _, tuned, _, _ = aligned(manifest_path, ft_embedding, None)
        tuned_test = np.asarray(tuned[order], dtype=np.float64)
    # predictions list the test rows in manifest order: the same rows, reordered alike
    position = {int(row): k for k, row in enumerate(np.flatnonzero(is_test))}
    reorder = np.asarray([position[int(row)] for row in order], dtype=int)

    raw: dict[str, np.ndarray] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    for setting in ("zs", "ft", "lp"):  # the paper's row order
        if setting not in predictions:
            continue
        stored = read_predictions(predictions[setting])
        scores = np.asarray(stored.scores)[reorder]
        if stored.metadata.get("protocol") != "sadman2025":
            raise VlmprobeError(f"Predictions {predictions[setting]!r} were not made under protocol sadman2025.", "re-run the setting under `multilabel: protocol: sadman2025`.")
        if setting == "zs":
            text = np.asarray(stored.metadata["details"]["text_embeddings"], dtype=np.float64)
            raw[setting] = _checked(frozen_test @ text.T, scores, setting, "the frozen embeddings and the class-name text embeddings")
        elif setting == "lp":
            head = load_head(lp_head)
            raw[setting] = _checked(frozen_test @ head.weight.T + head.bias, scores, setting, f"the frozen embeddings and {lp_head}")
            histories["lp"] = list(stored.metadata.get("details", {}).get("history", []))
        else:
            head = load_head(ft_head)
            raw[setting] = _checked(tuned_test @ head.weight.T + head.bias, scores, setting, f"the fine-tuned embeddings and {ft_head}")
            histories["ft"] = list(json.loads(Path(ft_info).read_text()).get("history", [])) if ft_info else []

    name = f"{dataset} / {model}"
    sweeps = {setting: threshold_sweep(scores, y_test) for setting, scores in raw.items()}
    score_maps = {setting: score_map_table(scores, y_test, classes, setting) for setting, scores in raw.items()}
    counts = class_counts(labels, classes)
    train_counts = class_counts([labels[i] for i in np.flatnonzero(~is_test & (np.asarray(manifest["fold"].to_list(), dtype=object) != 0))], classes) if "fold" in manifest.columns else []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_figure(out_dir / "threshold_sweep.png", sweep_figure(sweeps, f"{name}: threshold sweep (compute_metrics_v2, row-min-max scores)"))
    save_figure(out_dir / "class_counts.png", class_count_figure(counts, f"{name}, all splits"))
    save_figure(out_dir / "loss_curves.png", loss_figure({s: histories[s] for s in ("ft", "lp") if s in histories}, f"{name}: loss per epoch"))
    selection = projection_selection(test_labels, classes)
    projected = {}
    for tower, embeddings in (("frozen", frozen_test), ("ft", tuned_test)):
        if embeddings is None:
            continue
        result = projections(embeddings[selection["indices"]], seed) if selection["indices"] else {"pca": None, "umap": None, "trimap": None, "notes": {}}
        projected[tower] = {key: (None if value is None else np.asarray(value).tolist()) if key != "notes" else value for key, value in result.items()}
        what = "frozen tower (zs, lp)" if tower == "frozen" else "fine-tuned tower (ft)"
        save_figure(out_dir / f"projections_{tower}.png", projection_figure(result, selection, f"{name}: test embeddings of the {what}"))
    analyses = {
        "dataset": dataset, "model": model, "protocol": "sadman2025", "classes": classes, "n_test": int(is_test.sum()),
        "threshold_sweep": sweeps, "score_maps": score_maps, "printed": PRINTED,
        "domains": list(DOMAINS), "settings": list(raw),
        "class_counts": [list(item) for item in counts], "train_class_counts": [list(item) for item in train_counts], "loss_history": histories,
        "projections": {"selection": selection, **projected, "seed": seed},
    }  # fmt: skip
    write_json(out_dir / "analyses.json", analyses)
    log.info("%s: threshold sweep, score maps, domains, class counts, loss curves and projections of %s", name, ", ".join(raw))
    return analyses

