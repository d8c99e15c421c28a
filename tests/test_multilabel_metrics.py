"""The multi-label study's metrics: every number against a direct scikit-learn (or hand) computation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.predictions import Predictions, read_predictions, write_predictions
from vlmprobe.multilabel import metrics as vm
from vlmprobe.multilabel import separation as vs
from vlmprobe.stats import bootstrap_weights


def random_case(seed=0, n=60, n_labels=5, dim=8, ties=True):
    rng = np.random.default_rng(seed)
    indicator = rng.random((n, n_labels)) < np.linspace(0.5, 0.12, n_labels)
    indicator[indicator.sum(axis=1) == 0, 0] = True
    indicator[:2, -1] = True  # every label has positives
    scores = rng.normal(size=(n, n_labels)) + indicator
    if ties:
        scores = np.round(scores, 1)  # ties within and across samples, as real scores have
    predicted = scores > 0.6
    embeddings = rng.normal(size=(n, dim)) * 3 + indicator @ rng.normal(size=(n_labels, dim)) * 2
    return indicator, scores, predicted, embeddings


def test_classification_metrics_on_a_known_case():
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)
    p = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=bool)
    s = np.array([[0.9, 0.2, 0.1], [0.6, 0.7, 0.1], [0.8, 0.3, 0.2], [0.1, 0.2, 0.9]])
    m = vm.classification_metrics(y, s, p)
    # by hand: label 0 TP2 FP1 FN0 -> F1 0.8; label 1 TP1 FP0 FN1 -> 2/3; label 2 TP1 -> 1
    assert m["f1_macro"] == pytest.approx((0.8 + 2 / 3 + 1) / 3)
    assert m["f1_micro"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 1))
    assert m["exact_match"] == pytest.approx(0.5)  # rows 0 and 3
    assert m["hamming_loss"] == pytest.approx(2 / 12)
    assert m["predicted_labels_per_sample"] == pytest.approx(5 / 4)
    assert m["true_labels_per_sample"] == pytest.approx(5 / 4)
    # every true label outranks every false one: coverage counts the labels down to the lowest true one
    assert m["coverage_error"] == pytest.approx((1 + 1 + 2 + 1) / 4)
    assert m["lrap"] == pytest.approx(1.0)
    assert m["label_ranking_loss"] == pytest.approx(0.0)
    assert m["roc_auc_macro"] == pytest.approx(skm.roc_auc_score(y, s, average="macro"))
    assert m["average_precision_micro"] == pytest.approx(skm.average_precision_score(y, s, average="micro"))


def test_per_label_table_matches_sklearn():
    y, s, p, _ = random_case(1)
    rows = vm.per_label_metrics(y, s, p, [f"l{i}" for i in range(y.shape[1])])
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, p, average=None, zero_division=0)
    for c, row in enumerate(rows):
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx((precision[c], recall[c], f1[c], support[c]))
        assert row["roc_auc"] == pytest.approx(skm.roc_auc_score(y[:, c], s[:, c]))
        assert row["average_precision"] == pytest.approx(skm.average_precision_score(y[:, c], s[:, c]))
        assert row["predicted_positive_rate"] == pytest.approx(p[:, c].mean())


def test_undefined_roc_auc_is_left_out_of_the_macro_mean():
    y, s, p, _ = random_case(2)
    y[:, 1] = True  # a label present in every sample: no negatives, no ROC-AUC
    m = vm.classification_metrics(y, s, p)
    defined = [c for c in range(y.shape[1]) if c != 1]
    assert m["roc_auc_n_labels"] == len(defined)
    assert m["roc_auc_macro"] == pytest.approx(np.mean([skm.roc_auc_score(y[:, c], s[:, c]) for c in defined]))
    assert vm.per_label_metrics(y, s, p, list("abcde"))[1]["roc_auc"] is None


@pytest.mark.parametrize("seed", [0, 3])
def test_bootstrap_implementation_equals_sklearn_on_resamples(seed):
    """The vectorised weighted metrics equal scikit-learn run on the resampled rows (ties included)."""
    y, s, p, x = random_case(seed)
    weights = bootstrap_weights(len(y), 3, seed)
    fast = vm.weighted_metrics(y, s, p, x, weights)
    for b, row_weights in enumerate(weights):
        rows = np.repeat(np.arange(len(y)), row_weights)
        expected = vm.classification_metrics(y[rows], s[rows], p[rows]) | vs.class_distances(x[rows], y[rows])
        # also with sample_weight, the form the implementation mirrors
        assert fast["lrap"][b] == pytest.approx(skm.label_ranking_average_precision_score(y, s, sample_weight=row_weights))
        assert fast["roc_auc_micro"][b] == pytest.approx(skm.roc_auc_score(y, s, average="micro", sample_weight=row_weights))
        for name in vm.HEADLINE:
            if np.isnan(fast[name][b]):
                continue  # a label lost all its positives in this resample (checked below)
            assert fast[name][b] == pytest.approx(expected[name], rel=1e-9, abs=1e-12), name


def test_per_sample_ranking_means_are_sklearns():
    y, s, _, _ = random_case(4, ties=True)
    y[5] = True  # a sample with every label: LRAP 1, ranking loss 0 by convention
    values = vm.per_sample_ranking(y, s)
    assert values["lrap"].mean() == pytest.approx(skm.label_ranking_average_precision_score(y, s))
    assert values["coverage_error"].mean() == pytest.approx(skm.coverage_error(y, s))
    assert values["label_ranking_loss"].mean() == pytest.approx(skm.label_ranking_loss(y, s))


def test_class_distances_by_hand_with_a_multilabel_sample():
    x = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [2.0, 4.0], [1.0, 2.0]])
    y = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1]], dtype=bool)  # the last sample counts for both
    a = x[[0, 1, 4]].mean(axis=0)
    b = x[[2, 3, 4]].mean(axis=0)
    intra_a = np.mean([np.linalg.norm(x[i] - a) for i in (0, 1, 4)])
    intra_b = np.mean([np.linalg.norm(x[i] - b) for i in (2, 3, 4)])
    d = vs.class_distances(x, y)
    assert d["inter_class_distance"] == pytest.approx(np.linalg.norm(a - b))
    assert d["intra_class_distance"] == pytest.approx((intra_a + intra_b) / 2)
    assert d["distance_ratio"] == pytest.approx(np.linalg.norm(a - b) / ((intra_a + intra_b) / 2))
    unit = vs.weighted_distances(x, y, np.ones((1, len(x))))
    assert unit["inter_class_distance"][0] == pytest.approx(d["inter_class_distance"])
    assert unit["intra_class_distance"][0] == pytest.approx(d["intra_class_distance"])


def test_separation_scores_against_sklearn():
    y, _, _, x = random_case(5, n=80, n_labels=4)
    scores = vs.separation_scores(x, y)
    single = y.sum(axis=1) == 1
    groups = np.argmax(y, axis=1)
    keep = single.copy()
    for c in range(y.shape[1]):
        if (single & (groups == c)).sum() < 2:
            keep &= ~(single & (groups == c))
    assert scores["separation_n_samples"] == keep.sum()
    assert scores["silhouette"] == pytest.approx(skm.silhouette_score(x[keep], groups[keep]))
    assert scores["davies_bouldin"] == pytest.approx(skm.davies_bouldin_score(x[keep], groups[keep]))
    rows, columns = np.nonzero(y)  # (sample, label) pairs
    k, n_pairs = y.shape[1], len(rows)
    calinski = skm.calinski_harabasz_score(x[rows], columns)
    assert scores["fisher_ratio"] == pytest.approx(calinski * (k - 1) / (n_pairs - k))


def test_multiclass_through_one_hot_matrices():
    rng = np.random.default_rng(6)
    truth = rng.integers(0, 4, 50)
    scores = rng.normal(size=(50, 4)) + np.eye(4)[truth]
    y = np.eye(4, dtype=bool)[truth]
    p = np.eye(4, dtype=bool)[np.argmax(scores, axis=1)]
    m = vm.classification_metrics(y, scores, p)
    assert m["exact_match"] == pytest.approx(skm.accuracy_score(truth, np.argmax(scores, axis=1)))
    assert m["f1_micro"] == pytest.approx(m["exact_match"])
    assert m["f1_macro"] == pytest.approx(skm.f1_score(truth, np.argmax(scores, axis=1), average="macro"))
    rank_of_truth = (scores >= scores[np.arange(50), truth][:, None]).sum(axis=1)
    assert m["lrap"] == pytest.approx(np.mean(1.0 / rank_of_truth))  # mean reciprocal rank
    assert m["coverage_error"] == pytest.approx(rank_of_truth.mean())


def test_bootstrap_intervals_are_seeded_basic_intervals_with_valid_counts():
    y, s, p, x = random_case(7, n=40)
    y[:, -1] = False
    y[0, -1] = True  # one positive only: most resamples keep it, some lose it
    first = vm.bootstrap_intervals(y, s, p, x, n_resamples=200, seed=11)
    again = vm.bootstrap_intervals(y, s, p, x, n_resamples=200, seed=11)
    assert first == again
    assert first["exact_match"]["n_valid"] == 200
    assert 0 < first["f1_macro"]["n_valid"] < 200  # resamples without the rare label's positive are skipped
    values = vm.weighted_metrics(y, s, p, x, bootstrap_weights(len(y), 200, 11))["lrap"]
    estimate = skm.label_ranking_average_precision_score(y, s)
    q_low, q_high = np.quantile(values, [0.025, 0.975])
    assert first["lrap"]["low"] == pytest.approx(max(0.0, 2 * estimate - q_high))
    assert first["lrap"]["high"] == pytest.approx(min(1.0, 2 * estimate - q_low))
    assert first["lrap"]["bias"] == pytest.approx(values.mean() - estimate)
    other = vm.bootstrap_intervals(y, s, p, x, n_resamples=200, seed=12)
    assert other["lrap"] != first["lrap"]


def test_evaluate_reports_everything_and_is_json_safe():
    y, s, p, x = random_case(8)
    result = vm.evaluate(y, s, p, [f"l{i}" for i in range(y.shape[1])], x, n_resamples=50, seed=0)
    for name in (
        "inter_class_distance",
        "intra_class_distance",
        "distance_ratio",
        "f1_macro",
        "f1_micro",
        "exact_match",
        "lrap",
        "coverage_error",
        "label_ranking_loss",
        "roc_auc_macro",
        "silhouette",
        "davies_bouldin",
        "fisher_ratio",
        "distance_ratio_l2",
    ):
        assert name in result["metrics"]
    for name in vm.HEADLINE:
        interval = result["confidence_intervals"][name]
        assert interval["n_resamples"] == 50 and interval["low"] <= interval["high"]
    json.dumps(vm.json_safe(result), allow_nan=False)
    assert vm.json_safe({"a": [math.nan, np.float32(1.5)]}) == {"a": [None, 1.5]}


def test_predictions_round_trip_and_are_checked_against_the_manifest(tmp_path):
    predictions = Predictions(
        sample_ids=["a", "b"],
        scores=np.array([[0.1, 0.9], [0.7, 0.2]]),
        predicted=np.array([[False, True], [True, False]]),
        classes=["x", "y"],
        metadata={"setting": "lp", "wall_time_s": 1.5},
    )
    path = tmp_path / "p.parquet"
    write_predictions(path, predictions)
    back = read_predictions(path)
    assert back.sample_ids == ["a", "b"] and back.classes == ["x", "y"]
    np.testing.assert_array_equal(back.scores, predictions.scores)
    np.testing.assert_array_equal(back.predicted, predictions.predicted)
    assert back.metadata["setting"] == "lp"
    with pytest.raises(VlmprobeError, match="unreadable"):
        read_predictions(tmp_path / "missing.parquet")


def test_summary_table_marks_best_and_worst_and_lists_skipped(tmp_path):
    import polars as pl

    from vlmprobe.multilabel.summary import write_multilabel_summary

    y, s, p, x = random_case(9)
    classes = [f"l{i}" for i in range(y.shape[1])]
    paths = []
    for setting, noise in (("zs", 3.0), ("lp", 0.5), ("ft", 1.0)):
        scores = s + np.random.default_rng(len(setting) + int(noise * 10)).normal(scale=noise, size=s.shape)
        result = vm.evaluate(y, scores, scores > 0.6, classes, x if setting != "ft" else x * 2, n_resamples=20)
        result["metrics"]["wall_time_s"] = {"zs": 6.0, "lp": 30.0, "ft": 600.0}[setting]
        result.update(dataset="toy", model="m", setting=setting, multilabel=True, n_test=len(y), classes=classes, decision={"description": f"rule of {setting}"})
        paths.append(tmp_path / f"{setting}.json")
        paths[-1].write_text(json.dumps(vm.json_safe(result)))
    skipped = [{"dataset": "toy", "model": "pixels", "setting": "zs", "reason": "no text tower"}]
    write_multilabel_summary(paths, tmp_path / "s.parquet", tmp_path / "s.csv", tmp_path / "s.md", skipped)
    table = pl.read_parquet(tmp_path / "s.parquet")
    assert table["setting"].to_list() == ["zs", "ft", "lp", "zs"]  # the paper's row order; skipped rows last per model
    assert table.filter(pl.col("status") == "skipped")["reason"].to_list() == ["no text tower"]
    assert {"f1_macro", "f1_macro_low", "f1_macro_high", "f1_macro_n_valid", "time_min", "distance_ratio"} <= set(table.columns)
    assert table.filter(pl.col("setting") == "ft")["time_min"][0] == pytest.approx(10.0)
    markdown = (tmp_path / "s.md").read_text()
    rows: dict[str, str] = {}
    for line in markdown.splitlines():  # the first table (the paper's columns) of the group
        if line.startswith("| *"):
            rows.setdefault(line.split("|")[1].strip(), line)
    assert "10.00 ▼" in rows["*ft*"] and "**0.10** ▲" in rows["*zs*"]  # time: lower is better
    best_f1 = table.filter(pl.col("status") == "ok").sort("f1_macro")["setting"][-1]
    assert f"**{table.filter(pl.col('setting') == best_f1)['f1_macro'][0]:.3f}** ▲" in markdown
    assert "zs for pixels on toy: no text tower" in markdown
    assert (tmp_path / "s.csv").read_text().startswith("dataset,model,setting")
