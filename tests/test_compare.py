"""Paired model comparisons (vlmprobe.compare.paired) against planted truths and direct computations."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, f1_score

from vlmprobe.compare.paired import (
    Entry,
    compare_entries,
    compare_linear_probe_files,
    holm,
    mcnemar_exact,
    multilabel_features,
    permutation_p,
    point_value,
    sign_flip_exact,
    single_label_features,
    write_comparison,
)
from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.predictions import (
    from_probe_result,
    read_probe_predictions,
    write_probe_predictions,
)


def planted(n, accuracies, n_classes=3, n_folds=1, seed=0, share=None):
    """True labels and, per model, k fold predictions right with the model's probability (wrong: another class).

    ``share`` (optional): one uniform draw per sample shared by all models, so their errors are nested
    (a sample hard for the better model is hard for the worse one): the paired design's strength.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n)
    out = []
    for accuracy in accuracies:
        u = share if share is not None else rng.uniform(size=(n, n_folds))
        right = u < accuracy
        wrong = (labels[:, None] + rng.integers(1, n_classes, size=(n, n_folds))) % n_classes
        out.append(np.where(right, labels[:, None], wrong))
    return labels, out


def entries(labels, predictions, n_classes, names=None):
    names = names or [f"m{i}" for i in range(len(predictions))]
    built = [single_label_features(labels, p, n_classes) for p in predictions]
    return [Entry(name, features) for name, (features, _) in zip(names, built)], built[0][1]


def test_identical_predictions_give_no_significance():
    labels, (folds,) = planted(300, [0.7], n_folds=5, seed=1)
    chosen, metrics = entries(labels, [folds, folds.copy()], 3)
    rows = compare_entries("d", chosen, metrics, n_resamples=200, n_permutations=500)
    assert {row["metric"] for row in rows} == {"accuracy", "macro_f1"}
    for row in rows:
        assert row["difference"] == 0.0
        assert (row["low"], row["high"]) == (0.0, 0.0)
        assert row["p_value"] == 1.0 and row["p_holm"] == 1.0
        assert not row["significant"] and row["n_discordant"] == 0


def test_known_difference_is_found_and_covered():
    # nested errors: A right on 85 % of samples, B on a 75 % subset of them: true difference 0.10
    n = 600
    share = np.random.default_rng(7).uniform(size=(n, 1))
    labels, predictions = planted(n, [0.85, 0.75], share=share, seed=7)
    chosen, metrics = entries(labels, predictions, 3, ["A", "B"])
    rows = {row["metric"]: row for row in compare_entries("d", chosen, metrics, n_resamples=1000, n_permutations=2000)}
    accuracy = rows["accuracy"]
    assert (accuracy["a"], accuracy["b"]) == ("A", "B")
    assert accuracy["low"] <= 0.10 <= accuracy["high"]
    assert accuracy["b_better"] == 0  # nested: B is never right where A is wrong
    assert accuracy["p_value"] == pytest.approx(mcnemar_exact(accuracy["a_better"], 0))
    assert accuracy["p_value"] < 1e-10 and accuracy["significant"]
    assert rows["macro_f1"]["p_value"] < 1e-3 and rows["macro_f1"]["difference"] > 0


def coverage(true_difference, accuracies, replicates, n, n_folds=1, seed=0):
    """Share of replicates whose interval covers the planted accuracy difference, and share with Holm p < 0.05."""
    covered = rejected = 0
    for r in range(replicates):
        labels, predictions = planted(n, accuracies, n_folds=n_folds, seed=1000 * seed + r)
        chosen, metrics = entries(labels, predictions, 3)
        row = compare_entries("d", chosen, {"accuracy": metrics["accuracy"]}, n_resamples=400, seed=r)[0]
        signed = row["difference"] if row["a"] == "m0" else -row["difference"]
        low, high = (row["low"], row["high"]) if row["a"] == "m0" else (-row["high"], -row["low"])
        covered += low <= true_difference <= high
        rejected += row["significant"]
        assert abs(signed - true_difference) < 0.15
    return covered / replicates, rejected / replicates


def test_bootstrap_interval_coverage_and_test_level():
    # independent errors, 0.80 vs 0.70: 95 % intervals cover the planted 0.10 in about 95 % of replicates,
    # and the exact test has the power the normal approximation predicts (~114 discordant samples,
    # z = 0.10 * 300 / sqrt(114) = 2.8: power ~0.80); with equal accuracies it rejects at most at its level
    covered, power = coverage(0.10, [0.80, 0.70], replicates=150, n=300, seed=1)
    assert 0.90 <= covered <= 0.99
    assert 0.65 <= power <= 0.92
    covered_null, level = coverage(0.0, [0.75, 0.75], replicates=150, n=300, n_folds=5, seed=2)
    assert 0.90 <= covered_null <= 0.99
    assert level <= 0.08


def test_exact_mcnemar_matches_scipy_binomial_test():
    for b, c in [(0, 0), (3, 0), (10, 4), (30, 5), (17, 17), (0, 25), (120, 95)]:
        expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
        assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)
        assert sign_flip_exact([1] * b + [-1] * c + [0] * 5) == pytest.approx(expected, rel=1e-9)


def test_sign_flip_exact_against_enumeration():
    rng = np.random.default_rng(3)
    for _ in range(5):
        steps = rng.integers(-5, 6, size=12)
        observed = abs(steps.sum())
        signs = np.array(list(itertools.product([-1, 1], repeat=steps.size)))
        expected = np.mean(np.abs(signs @ np.abs(steps)) >= observed)
        assert sign_flip_exact(steps) == pytest.approx(expected, rel=1e-12)


def test_holm_against_step_down_procedure():
    rng = np.random.default_rng(4)
    for m in (1, 2, 5, 12):
        p = rng.uniform(0, 0.1, size=m) ** 2
        order = np.argsort(p)
        expected = np.empty(m)
        running = 0.0
        for rank, index in enumerate(order):
            running = max(running, min(1.0, (m - rank) * p[index]))
            expected[index] = running
        np.testing.assert_allclose(holm(p), expected)
        for alpha in (0.01, 0.05):
            rejected = set()
            for rank, index in enumerate(order):  # reject while p_(i) <= alpha / (m - i + 1)
                if p[index] > alpha / (m - rank):
                    break
                rejected.add(int(index))
            assert set(np.flatnonzero(holm(p) <= alpha).tolist()) == rejected


def test_features_reproduce_scikit_learn_on_resampled_rows():
    labels, (folds,) = planted(80, [0.6], n_classes=4, n_folds=3, seed=5)
    features, metrics = single_label_features(labels, folds, 4)
    assert point_value(metrics["accuracy"], features["accuracy"]) == pytest.approx(np.mean([accuracy_score(labels, folds[:, k]) for k in range(3)]))
    rows = np.random.default_rng(0).integers(0, 80, size=80)
    weights = np.bincount(rows, minlength=80)[None, :].astype(float)
    macro = metrics["macro_f1"].value(weights @ features["macro_f1"], weights.sum(axis=1))[0]
    assert macro == pytest.approx(np.mean([f1_score(labels[rows], folds[rows, k], average="macro", zero_division=0) for k in range(3)]))

    rng = np.random.default_rng(6)
    y = rng.uniform(size=(60, 5)) < 0.3
    p = rng.uniform(size=(60, 5)) < 0.4
    features, metrics = multilabel_features(y, p)
    assert point_value(metrics["exact_match"], features["exact_match"]) == pytest.approx(accuracy_score(y, p))
    assert point_value(metrics["f1_samples"], features["f1_samples"]) == pytest.approx(f1_score(y, p, average="samples", zero_division=0))
    assert point_value(metrics["f1_macro"], features["f1_macro"]) == pytest.approx(f1_score(y, p, average="macro", zero_division=0))


def test_monte_carlo_permutation_matches_full_enumeration():
    # 10 discordant samples: the swap test's exact p by enumerating all 2^10 swap patterns, directly on predictions
    labels, (a, b) = planted(40, [0.8, 0.5], n_classes=3, n_folds=2, seed=8)
    b[:30] = a[:30]
    b[30:, 0] = (a[30:, 0] + 1) % 3
    (fa, fb), metrics = [single_label_features(labels, x, 3)[0]["macro_f1"] for x in (a, b)], single_label_features(labels, a, 3)[1]
    discordant = np.flatnonzero((a != b).any(axis=1))
    assert discordant.size == 10

    def macro(pred):  # mean over folds of macro F1 over the classes present (scikit-learn's, checked above), fast
        scores = []
        for k in range(pred.shape[1]):
            f1 = [2 * np.sum((pred[:, k] == c) & (labels == c)) / (np.sum(pred[:, k] == c) + np.sum(labels == c)) for c in range(3) if np.any(pred[:, k] == c) or np.any(labels == c)]
            scores.append(np.mean(f1))
        return np.mean(scores)

    assert macro(a) == pytest.approx(np.mean([f1_score(labels, a[:, k], average="macro") for k in range(2)]))

    observed = abs(macro(a) - macro(b))
    extreme = 0
    for pattern in itertools.product([False, True], repeat=discordant.size):
        swap = np.zeros(40, bool)
        swap[discordant[list(pattern)]] = True
        a2, b2 = np.where(swap[:, None], b, a), np.where(swap[:, None], a, b)
        extreme += abs(macro(a2) - macro(b2)) >= observed - 1e-12
    exact = extreme / 2**10
    estimate = permutation_p(metrics["macro_f1"], fa, fb, 20000, np.random.SeedSequence(0))
    assert estimate == pytest.approx(exact, abs=0.01)


def test_linear_probe_predictions_file_and_comparison(tmp_path):
    from vlmprobe.datasets.splits import assign_splits
    from vlmprobe.linear_probe.probe import run_linear_probe

    rng = np.random.default_rng(9)
    n, classes = 240, ["a", "b", "c"]
    y = rng.integers(0, 3, size=n)
    labels = [classes[i] for i in y]
    split, fold = assign_splits([[name] for name in labels], classes, multilabel=False, seed=0)
    ids = [f"s{i:03d}" for i in range(n)]
    entries_ = []
    for model, noise in (("good", 0.6), ("bad", 3.0)):
        x = np.eye(3)[y] * 2 + rng.normal(0, noise, size=(n, 3))
        x = np.concatenate([x, rng.normal(size=(n, 5))], axis=1).astype(np.float32)
        result = run_linear_probe(x, labels, split, fold)
        predictions = from_probe_result(result, ids, labels, {"model": model})
        path = tmp_path / f"{model}.predictions.parquet"
        write_probe_predictions(path, predictions)
        back = read_probe_predictions(path)
        assert back.sample_ids == [ids[i] for i in result["predictions"]["test_rows"]]
        for k, record in enumerate(result["folds"]):
            assert accuracy_score(back.labels, back.folds[:, k]) == pytest.approx(record["test"]["accuracy"])
        assert accuracy_score(back.labels, back.final) == pytest.approx(result["final"]["test"]["accuracy"])
        result_path = tmp_path / f"{model}.json"
        result_path.write_text(json.dumps(result))
        entries_.append({"dataset": "toy", "model": model, "predictions": str(path), "result": str(result_path)})
    table = compare_linear_probe_files(entries_, n_resamples=300, n_permutations=500, seed=0)
    assert table.height == 2 and set(table["a"]) == {"good"}
    assert table.filter(table["metric"] == "accuracy")["significant"].item()
    outputs = [tmp_path / name for name in ("c.parquet", "c.csv", "c.md", "c.html", "c.png")]
    write_comparison(table, *outputs, title="t", note_text="n")
    assert all(path.stat().st_size > 0 for path in outputs)
    assert "real: good > bad" in outputs[2].read_text()

    # predictions from another run than the result file are refused
    other = json.loads((tmp_path / "bad.json").read_text())
    other["summary"]["test"]["accuracy"]["mean"] += 0.01
    (tmp_path / "bad.json").write_text(json.dumps(other))
    with pytest.raises(VlmprobeError, match="result file says"):
        compare_linear_probe_files(entries_, n_resamples=10, n_permutations=10)


def test_multilabel_settings_compared_on_exact_match(tmp_path):
    # planted: setting "good" matches the label set exactly on 70 % of samples, "bad" on a 40 % subset of those
    import pyarrow as pa

    from vlmprobe.compare.paired import compare_multilabel_files
    from vlmprobe.formats.predictions import Predictions, write_predictions
    from vlmprobe.io import write_parquet

    rng = np.random.default_rng(10)
    classes = ["a", "b", "c", "d"]
    n_train, n = 50, 200
    truth = rng.uniform(size=(n, 4)) < 0.35
    truth[~truth.any(axis=1), 0] = True
    ids = [f"s{i:03d}" for i in range(n_train + n)]
    labels = [["a"]] * n_train + [[c for c, on in zip(classes, row) if on] for row in truth]
    manifest = pa.table({"sample_id": ids, "labels": labels, "split": ["train"] * n_train + ["test"] * n})
    manifest = manifest.replace_schema_metadata({b"vlmprobe": json.dumps({"classes": classes, "multilabel": True})})
    write_parquet(tmp_path / "m.parquet", manifest)
    u = rng.uniform(size=n)
    entries_ = []
    predictions = {}
    for setting, rate in (("good", 0.7), ("bad", 0.4)):
        flip = rng.integers(0, 4, size=n)
        predictions[setting] = truth.copy()
        wrong = u >= rate
        predictions[setting][wrong, flip[wrong]] ^= True  # exactly one wrong label where the setting misses
    predictions["same"] = predictions["bad"]  # identical predictions: no difference, p = 1
    for setting, predicted in predictions.items():
        path = tmp_path / f"{setting}.parquet"
        write_predictions(path, Predictions(ids[n_train:], predicted.astype(float), predicted, classes, {"setting": setting}))
        entries_.append({"dataset": "ml", "model": "m", "setting": setting, "predictions": str(path)})
    table = compare_multilabel_files(entries_, {"ml": str(tmp_path / "m.parquet")}, n_resamples=500, n_permutations=1000, seed=1)
    assert table.height == 9 and set(table["family_size"]) == {3}
    exact = {(row["a"], row["b"]): row for row in table.filter(table["metric"] == "exact_match").iter_rows(named=True)}
    real = exact[("m/good", "m/bad")]
    assert real["difference"] == pytest.approx(np.mean(u < 0.7) - np.mean(u < 0.4))
    assert real["low"] <= 0.3 <= real["high"] and real["significant"] and real["test"] == "exact McNemar"
    assert real["p_value"] == pytest.approx(binomtest(real["a_better"], real["a_better"] + real["b_better"]).pvalue)
    same = exact[("m/bad", "m/same")] if ("m/bad", "m/same") in exact else exact[("m/same", "m/bad")]
    assert (same["difference"], same["low"], same["high"], same["p_value"]) == (0.0, 0.0, 0.0, 1.0)
