"""The multi-label study's linear probe: class weights, thresholds from training folds only, raw-space heads."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from sklearn import metrics as skm

from vlmprobe.datasets.manifest import build_manifest, write_manifest
from vlmprobe.datasets.records import Record
from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.embeddings import write_embeddings
from vlmprobe.formats.heads import LinearHead, load_head, save_head, sigmoid, softmax
from vlmprobe.formats.predictions import read_predictions
from vlmprobe.multilabel.linear_probe import f1_optimal_thresholds, fit_probe, run_probe_files
from vlmprobe.multilabel.metrics import evaluate_files


def planted(n=150, n_labels=4, dim=12, seed=0):
    """Embeddings that carry imbalanced labels linearly (prevalence 45 % down to 8 %)."""
    rng = np.random.default_rng(seed)
    y = rng.random((n, n_labels)) < np.linspace(0.45, 0.08, n_labels)
    directions = rng.normal(size=(n_labels, dim))
    x = rng.normal(size=(n, dim)) + 1.5 * y @ directions + 5.0  # offset and scale: standardization matters
    return x, y


def folds_of(n, k=5):
    return np.arange(n) % k


def test_f1_optimal_thresholds_are_the_best_of_every_candidate():
    rng = np.random.default_rng(1)
    y = rng.random((80, 3)) < 0.3
    s = rng.random((80, 3)) + 0.4 * y
    thresholds = f1_optimal_thresholds(y, s)
    for c in range(3):

        def f1(t):
            decided = s[:, c] >= t
            return 2 * (decided & y[:, c]).sum() / (decided.sum() + y[:, c].sum())

        chosen = skm.f1_score(y[:, c], s[:, c] >= thresholds[c])
        best = max(f1(t) for t in np.unique(s[:, c]))
        assert chosen == pytest.approx(best)
        assert thresholds[c] in s[:, c]


def test_thresholds_and_C_come_from_the_training_folds_only():
    x, y = planted(n_labels=3)
    train, test = slice(0, 110), slice(110, None)
    first = fit_probe(x[train], y[train], folds_of(110, 3), x[test], multilabel=True, c_grid=(0.1, 1.0))
    # other test rows: the decisions change, the choices made on the training folds do not
    shuffled = fit_probe(x[train], y[train], folds_of(110, 3), x[test][::-1] * 1.3, multilabel=True, c_grid=(0.1, 1.0))
    np.testing.assert_array_equal(first.thresholds, shuffled.thresholds)
    assert first.C == shuffled.C
    assert first.cv_average_precision == shuffled.cv_average_precision
    aucs = [skm.roc_auc_score(y[test][:, c], first.test_scores[:, c]) for c in range(y.shape[1])]
    assert min(aucs) > 0.8  # the planted signal is found, rare labels included
    np.testing.assert_array_equal(first.test_predicted, first.test_scores >= first.thresholds)


def test_class_weights_keep_a_rare_label_predicted():
    x, y = planted(n=200, seed=3)
    result = fit_probe(x[:160], y[:160], folds_of(160), x[160:], multilabel=True, c_grid=(1.0,), threshold=0.5)
    rare = y.shape[1] - 1
    # balanced weights put the rare label's probabilities around 0.5, not near its 8 % prevalence
    assert result.test_predicted[:, rare].sum() >= y[160:, rare].sum()


@pytest.mark.parametrize("n_classes", [2, 3])
def test_head_on_raw_embeddings_reproduces_the_probe(n_classes):
    x, y = planted(n=150, n_labels=n_classes, seed=n_classes)
    multilabel = n_classes == 3
    if not multilabel:  # one label per sample
        y = np.eye(n_classes, dtype=bool)[np.argmax(y + np.random.default_rng(0).random(y.shape) * 0.5, axis=1)]
    result = fit_probe(x[:120], y[:120], folds_of(120), x[120:], multilabel=multilabel, c_grid=(0.1,))
    head = LinearHead(result.weight, result.bias, [f"c{i}" for i in range(n_classes)], multilabel, result.thresholds)
    np.testing.assert_allclose(head.probabilities(x[120:]), result.test_scores, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(head.decide(head.probabilities(x[120:])), result.test_predicted)
    if not multilabel:
        assert result.thresholds is None
        assert (result.test_predicted.sum(axis=1) == 1).all()


def test_head_file_round_trip(tmp_path):
    head = LinearHead(np.arange(6.0).reshape(2, 3), np.array([0.5, -0.5]), ["a", "b"], True, np.array([0.3, 0.7]), "linear_probe", {"C": 0.1})
    save_head(tmp_path / "head.safetensors", head)
    back = load_head(tmp_path / "head.safetensors")
    np.testing.assert_array_equal(back.weight, head.weight)
    np.testing.assert_allclose(back.thresholds, head.thresholds, rtol=1e-6)
    assert (back.classes, back.multilabel, back.source, back.details) == (["a", "b"], True, "linear_probe", {"C": 0.1})
    with pytest.raises(VlmprobeError, match="does not exist"):
        load_head(tmp_path / "missing.safetensors")


def test_numerically_safe_activations():
    assert sigmoid(np.array([-1000.0, 0.0, 1000.0])) == pytest.approx([0.0, 0.5, 1.0])
    rows = softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    assert rows == pytest.approx(np.array([[0.5, 0.5], [0.25, 0.75]]))


def write_study_inputs(tmp_path, x, labels, multilabel=True):
    records = [Record(sample_id=f"s{i:03d}", path=str(tmp_path / f"s{i:03d}.png"), labels=tuple(names)) for i, names in enumerate(labels)]
    table = build_manifest("toy", {"kind": "csv", "verify_images": False}, records, multilabel, seed=0, test_fraction=0.2, n_folds=5)
    manifest = tmp_path / "manifest.parquet"
    write_manifest(manifest, table)
    ids = table.column("sample_id").to_pylist()
    order = [int(sample_id[1:]) for sample_id in ids]
    embeddings = tmp_path / "embeddings.parquet"
    write_embeddings(embeddings, ids, x[order].astype(np.float32), {"spec": {"family": "pixels"}, "model_id": "toy"})
    return manifest, embeddings, table


def test_probe_job_end_to_end(tmp_path):
    x, y = planted(n=160, n_labels=3, seed=5)
    names = ["effusion", "nodule", "opacity"]
    labels = [[names[c] for c in np.flatnonzero(row)] or ["normal"] for row in y]
    manifest, embeddings, table = write_study_inputs(tmp_path, x, labels)
    predictions, head = tmp_path / "lp.predictions.parquet", tmp_path / "lp.head.safetensors"
    result = run_probe_files(manifest, embeddings, {"family": "pixels"}, predictions, head, c_grid=(0.1, 1.0), identity={"dataset": "toy"})
    stored = read_predictions(predictions)
    test_ids = [s for s, split in zip(table.column("sample_id").to_pylist(), table.column("split").to_pylist(), strict=True) if split == "test"]
    assert stored.sample_ids == test_ids
    assert stored.classes == sorted([*names, "normal"])
    assert stored.metadata["setting"] == "lp" and stored.metadata["decision"]["rule"] == "per-label threshold"
    assert set(stored.metadata["decision"]["thresholds"]) == set(stored.classes)
    assert load_head(head).details["C"] == result.C
    metrics = evaluate_files(manifest, predictions, embeddings, {"family": "pixels"}, n_resamples=30)
    assert metrics["metrics"]["roc_auc_macro"] > 0.8
    assert metrics["metrics"]["wall_time_s"] > 0
    assert metrics["n_test"] == len(test_ids)
    with pytest.raises(VlmprobeError, match="was computed with model spec"):
        run_probe_files(manifest, embeddings, {"family": "other"}, predictions, head)


def test_probe_job_on_a_multiclass_dataset(tmp_path):
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 3, 120)
    x = rng.normal(size=(120, 6)) + 2.0 * np.eye(3, 6)[truth]
    manifest, embeddings, _ = write_study_inputs(tmp_path, x, [[f"class{t}"] for t in truth], multilabel=False)
    run_probe_files(manifest, embeddings, None, tmp_path / "p.parquet", tmp_path / "h.safetensors", c_grid=(1.0,))
    stored = read_predictions(tmp_path / "p.parquet")
    assert stored.metadata["decision"]["rule"] == "argmax"
    assert (stored.predicted.sum(axis=1) == 1).all()
    np.testing.assert_allclose(stored.scores.sum(axis=1), 1.0)
    assert not load_head(tmp_path / "h.safetensors").multilabel


def test_one_fold_is_refused():
    x, y = planted(n=40)
    with pytest.raises(VlmprobeError, match="fewer than two CV folds"):
        fit_probe(x, y, np.zeros(40, dtype=int), x[:5], multilabel=True)


def test_manifest_rows_without_folds_are_not_used_as_training(tmp_path):
    # the fold column of test rows is null: the probe must not see them while fitting
    x, y = planted(n=100, n_labels=2, seed=9)
    labels = [["a"] if row[0] else ["b"] for row in y]
    manifest, embeddings, table = write_study_inputs(tmp_path, x, labels)
    assert pa.compute.all(pa.compute.is_null(table.filter(pa.compute.equal(table["split"], "test"))["fold"])).as_py()
    run_probe_files(manifest, embeddings, None, tmp_path / "p.parquet", tmp_path / "h.safetensors", c_grid=(1.0,))
    assert len(read_predictions(tmp_path / "p.parquet").sample_ids) == int((np.asarray(table["split"].to_pylist()) == "test").sum())
