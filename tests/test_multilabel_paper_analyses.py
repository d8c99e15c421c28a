"""Sadman et al.'s further analyses (``vlmprobe.multilabel.paper_analyses``), each against the notebook's computation
written out here on hand-made tables: the threshold sweep, the score maps, per-class and per-domain P / R / F1, the
class counts, the projections' selection, shapes and determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import (
    classification_report,
    coverage_error,
    label_ranking_average_precision_score,
    precision_recall_fscore_support,
)

from vlmprobe.labels import CHEXPERT_CLASSES
from vlmprobe.multilabel import paper_analyses as pa

CLASSES = list(CHEXPERT_CLASSES)


def _case(seed=0, n=40):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, len(CLASSES))) < 0.2).astype(int)
    y[y.sum(axis=1) == 0, -1] = 1  # No Finding when nothing else
    logits = rng.normal(size=y.shape) * 30 + y * 20
    return logits, y


def _row_minmax(x):  # the notebook's _row_minmax
    mn = x.min(1, keepdims=True)
    mx = x.max(1, keepdims=True)
    return (x - mn) / (mx - mn + 1e-8)


def test_threshold_sweep_is_compute_metrics_v2_per_threshold():
    logits, y = _case()
    rows = pa.threshold_sweep(logits, y)
    ths = np.arange(0.20, 0.91, 0.05)
    assert len(rows) == 15 and [r["threshold"] for r in rows] == [round(float(t), 2) for t in ths]
    for row, t in zip(rows, ths, strict=True):
        y_prob = _row_minmax(logits)
        y_pred = (y_prob > t).astype(int)
        f1 = classification_report(y, y_pred, zero_division=0, output_dict=True)["macro avg"]["f1-score"]
        assert row["f1_macro"] == pytest.approx(f1)
        assert row["lrap"] == pytest.approx(label_ranking_average_precision_score(y, y_prob))
        assert row["coverage_error"] == pytest.approx(coverage_error(y, y_prob))


def test_score_maps_are_logits_to_prob():
    logits, _ = _case(1)
    norm = np.linalg.norm(logits, axis=1, keepdims=True) + 1e-8
    assert np.allclose(pa.score_map(logits, "cosine"), (logits / norm + 1) / 2)
    assert np.allclose(pa.score_map(logits, "sigmoid-50"), 1 / (1 + np.exp(-logits / 50.0)))
    assert np.allclose(pa.score_map(logits, "sigmoid-80"), expit(logits / 80.0))
    assert np.allclose(pa.score_map(logits, "row-min-max"), _row_minmax(logits))


def test_domain_metrics_on_a_hand_made_table():
    """Four samples, classes by name; domain truth = any of its classes, decision = any class's prob > 0.5."""
    prob = np.zeros((4, 14))
    y = np.zeros((4, 14), dtype=int)
    c = CLASSES.index
    y[0, c("Cardiomegaly")] = 1
    prob[0, c("Enlarged Cardiomediastinum")] = 0.9  # Cardiovascular: TP (another class of the domain)
    y[1, c("Edema")] = 1  # Pulmonary: FN
    prob[2, c("Lung Lesion")] = 0.7  # Pulmonary: FP
    y[3, c("Fracture")] = 1
    prob[3, c("Fracture")] = 0.6  # Skeletal: TP
    prob[3, c("Support Devices")] = 0.5  # Device: not > 0.5
    out = pa.domain_prf(prob, y, CLASSES)
    assert out["Cardiovascular"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1, "n_classes": 2}
    assert (out["Pulmonary"]["precision"], out["Pulmonary"]["recall"], out["Pulmonary"]["f1"]) == (0.0, 0.0, 0.0)
    assert out["Skeletal"]["f1"] == 1.0 and out["Device"]["f1"] == 0.0 and out["Device"]["support"] == 0
    # the notebook's first form (max of the domain's probabilities > t) gives the same
    logits, yy = _case(2)
    probs = pa.score_map(logits, "cosine")
    domains = pa.domain_prf(probs, yy, CLASSES)
    for j, (name, members) in enumerate(pa.DOMAINS.items()):
        cols = [CLASSES.index(m) for m in members]
        truth = (yy[:, cols].sum(1) > 0).astype(int)
        pred = (probs[:, cols].max(1) > 0.5).astype(int)
        p, r, f, _ = precision_recall_fscore_support(truth, pred, average="binary", zero_division=0)
        assert (domains[name]["precision"], domains[name]["recall"], domains[name]["f1"]) == pytest.approx((p, r, f))


def test_score_map_table_marks_what_the_notebook_prints():
    logits, y = _case(3)
    zs = pa.score_map_table(logits, y, CLASSES, "zs")
    assert [r["score_map"] for r in zs] == list(pa.SCORE_MAPS)
    assert [r["score_map"] for r in zs if r["printed"]] == ["cosine"]
    assert [r["score_map"] for r in pa.score_map_table(logits, y, CLASSES, "lp") if r["printed"]] == ["sigmoid-80"]
    p, r, f, _ = precision_recall_fscore_support(y, (expit(logits / 80) > 0.5).astype(int), average=None, zero_division=0)
    row = zs[3]
    assert row["f1_macro"] == pytest.approx(f.mean()) and row["precision_macro"] == pytest.approx(p.mean())
    assert row["per_class"]["Edema"]["recall"] == pytest.approx(r[CLASSES.index("Edema")])


def test_class_counts_sorted_descending():
    labels = [["Cardiomegaly"], ["Cardiomegaly", "Edema"], [], ["No Finding"], ["Edema"], ["Cardiomegaly"]]
    classes = ["Cardiomegaly", "Edema", "No Finding"]
    assert pa.class_counts(labels, classes) == [("Cardiomegaly", 3), ("Edema", 2), ("No Finding", 2)]


def test_projection_selection_is_the_notebooks():
    labels = [["Edema", "Cardiomegaly"], ["No Finding"], ["Fracture"], ["Cardiomegaly"], ["Support Devices"], ["Edema"]]
    classes = sorted({c for row in labels for c in row})
    sel = pa.projection_selection(labels, classes, limit=1)
    # categories in the notebook's class order; first `limit` samples with each; a sample once per label it has
    assert sel["categories"] == ["Cardiomegaly", "Edema", "Fracture", "Support Devices", "No Finding"]
    assert sel["indices"] == [0, 0, 2, 4, 1]
    # colour by target[0] (the notebook's class order puts Cardiomegaly before Edema)
    assert sel["all_labels"] == [0, 0, 2, 3, 4]
    assert sel["binary_labels"] == [1, 1, 1, 1, 0]
    assert sel["domain_labels"] == [0, 0, 2, 3, -1]


@pytest.mark.slow
def test_projections_shapes_pca_and_determinism():
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x = np.random.default_rng(4).normal(size=(40, 16)).astype(np.float32)
    first, again = pa.projections(x, 42), pa.projections(x, 42)
    pca = PCA(n_components=2).fit_transform(x)
    scaler = StandardScaler().fit(pca)
    assert np.allclose(first["pca"], scaler.transform(pca), atol=1e-5)
    for key in ("pca", "umap", "trimap"):
        assert first[key].shape == (40, 2)
        assert np.array_equal(first[key], again[key]), key
    small = pa.projections(x[:10], 42)
    assert small["trimap"] is None and "too few" in small["notes"]["trimap"] and small["umap"].shape == (10, 2)
