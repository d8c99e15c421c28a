"""The poster's LinearSVC protocol (vlmprobe.linear_probe.probe) against scikit-learn, plus its contracts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from vlmprobe.datasets.splits import assign_splits
from vlmprobe.errors import VlmprobeError
from vlmprobe.linear_probe.probe import run_linear_probe
from vlmprobe.linear_svc import SpectralPreconditioner, Standardizer, fit_squared_hinge_ovr


def clusters(n: int, dim: int, n_classes: int, seed: int, separation: float = 1.0, names=None):
    """Overlapping Gaussian clusters with correlated, offset, unequally scaled features."""
    rng = np.random.default_rng(seed)
    y = rng.choice(n_classes, size=n, p=np.linspace(2.0, 1.0, n_classes) / np.linspace(2.0, 1.0, n_classes).sum())
    centers = rng.normal(0.0, separation, size=(n_classes, dim))
    mixing = np.eye(dim) + 0.3 * rng.normal(size=(dim, dim))
    x = (centers[y] + rng.normal(size=(n, dim))) @ mixing * rng.uniform(0.5, 5.0, size=dim) + rng.normal(0, 3, size=dim)
    names = names or [f"class{i}" for i in range(n_classes)]
    labels = [names[i] for i in y]
    split, fold = assign_splits([[name] for name in labels], sorted(set(labels)), multilabel=False, seed=seed)
    return x.astype(np.float32), labels, split, fold


def sklearn_reference(x, labels, split, fold, positive_label=None):
    """The protocol written the obvious way: a Pipeline per fit, scikit-learn metrics."""
    labels = np.asarray(labels)
    split = np.asarray(split)
    fold = np.asarray([-1 if f is None else f for f in fold])
    classes = sorted(set(labels))
    test = split == "test"

    def score(y_true, y_pred):
        if len(classes) == 2:
            fscore = f1_score(y_true, y_pred, pos_label=positive_label or classes[1])
        else:
            fscore = f1_score(y_true, y_pred, average="macro")
        return accuracy_score(y_true, y_pred), fscore, f1_score(y_true, y_pred, average="macro")

    out = []
    for f in range(5):
        fit = (split == "train") & (fold != f)
        model = Pipeline([("scale", StandardScaler()), ("svm", LinearSVC(C=100.0 / fit.sum(), random_state=0))])
        model.fit(x[fit], labels[fit])
        val = (split == "train") & (fold == f)
        out.append(
            {
                "pred_test": model.predict(x[test]),
                "val": score(labels[val], model.predict(x[val])),
                "test": score(labels[test], model.predict(x[test])),
            }
        )
    return out


def as_names(result, indices):
    return np.asarray(result["classes"])[np.asarray(indices)]


@pytest.fixture(scope="module")
def multiclass():
    return clusters(n=600, dim=24, n_classes=4, seed=3, separation=0.6)


@pytest.fixture(scope="module")
def multiclass_result(multiclass):
    return run_linear_probe(*multiclass)


def test_newton_solver_reaches_liblinear_optimum():
    """The joint one-vs-rest solver and liblinear (tight tolerance) find the same weights."""
    x, labels, _, _ = clusters(n=400, dim=16, n_classes=3, seed=1, separation=0.5)
    y = np.searchsorted(sorted(set(labels)), labels)
    c = 100.0 / len(y)
    scaler = Standardizer.fit(x)
    design = scaler.transform(x, with_bias=True)
    targets = np.where(y[:, None] == np.arange(3), 1.0, -1.0)
    ours = fit_squared_hinge_ovr(
        design, targets, c, tol=1e-8, preconditioner=SpectralPreconditioner.from_design(design)
    )
    reference = LinearSVC(C=c, dual=False, tol=1e-10, max_iter=10_000).fit(scaler.transform(x), y)
    assert ours.converged
    np.testing.assert_allclose(ours.coef, reference.coef_, atol=1e-6 * np.abs(reference.coef_).max())
    np.testing.assert_allclose(ours.intercept, reference.intercept_, atol=1e-6)


def test_standardizer_matches_standard_scaler():
    x, *_ = clusters(n=200, dim=8, n_classes=2, seed=0)
    x[:, 3] = 7.0  # a constant feature keeps scale 1, as in StandardScaler
    reference = StandardScaler().fit(x)
    ours = Standardizer.fit(x)
    np.testing.assert_allclose(ours.mean, reference.mean_)
    np.testing.assert_allclose(ours.scale, reference.scale_)
    np.testing.assert_allclose(ours.transform(x), reference.transform(x.astype(np.float64)), atol=1e-12)


def test_multiclass_protocol_matches_sklearn(multiclass, multiclass_result):
    reference = sklearn_reference(*multiclass)
    result = multiclass_result
    for record, ref, predicted in zip(result["folds"], reference, result["predictions"]["fold_models"]):
        np.testing.assert_array_equal(as_names(result, predicted), ref["pred_test"])
        assert (record["test"]["accuracy"], record["test"]["fscore"], record["test"]["macro_f1"]) == ref["test"]
        assert (record["val"]["accuracy"], record["val"]["fscore"], record["val"]["macro_f1"]) == ref["val"]
    accuracies = [ref["test"][0] for ref in reference]
    assert result["summary"]["test"]["accuracy"]["mean"] == pytest.approx(np.mean(accuracies), abs=1e-15)
    assert result["summary"]["test"]["accuracy"]["std"] == pytest.approx(np.std(accuracies, ddof=0), abs=1e-15)
    # Not trivially separable, so the comparison means something.
    assert 0.5 < result["summary"]["test"]["accuracy"]["mean"] < 0.98


def test_liblinear_solver_is_the_literal_reference(multiclass):
    result = run_linear_probe(*multiclass, solver="liblinear")
    for record, ref in zip(result["folds"], sklearn_reference(*multiclass)):
        assert (record["test"]["accuracy"], record["test"]["fscore"]) == ref["test"][:2]


def test_protocol_parameters_are_recorded(multiclass, multiclass_result):
    result = multiclass_result
    json.dumps(result, allow_nan=False)  # JSON-serialisable as it stands
    split = np.asarray(multiclass[2])
    n_train, n_test = int((split == "train").sum()), int((split == "test").sum())
    assert (result["n_train"], result["n_test"], result["n_features"]) == (n_train, n_test, 24)
    assert result["classes"] == ["class0", "class1", "class2", "class3"]
    protocol = result["protocol"]
    assert protocol["n_folds"] == 5 and protocol["std_ddof"] == 0 and protocol["C_numerator"] == 100.0
    assert protocol["fscore"] == "macro F1" and protocol["positive_label"] is None
    assert sum(r["n_val"] for r in result["folds"]) == n_train
    for record in result["folds"]:
        assert record["n_fit"] + record["n_val"] == n_train
        assert record["C"] == 100.0 / record["n_fit"]
        assert record["test"]["fscore"] == record["test"]["macro_f1"]
        assert record["solver_info"]["converged"]
    assert result["final"]["n_fit"] == n_train and result["final"]["C"] == 100.0 / n_train
    assert len(result["predictions"]["test_rows"]) == n_test


def test_binary_fscore_is_f1_of_the_positive_class():
    data = clusters(n=400, dim=12, n_classes=2, seed=5, separation=0.4, names=["malignant", "benign"])
    default = run_linear_probe(*data)
    assert default["protocol"]["positive_label"] == "malignant"  # second in sorted order
    reference = sklearn_reference(*data)
    explicit = run_linear_probe(*data, positive_label="benign")
    assert explicit["protocol"]["positive_label"] == "benign"
    labels = np.asarray(data[1])[np.asarray(data[2]) == "test"]
    for f in range(5):
        predicted = as_names(default, default["predictions"]["fold_models"][f])
        np.testing.assert_array_equal(predicted, reference[f]["pred_test"])
        assert default["folds"][f]["test"]["fscore"] == f1_score(labels, predicted, pos_label="malignant")
        assert explicit["folds"][f]["test"]["fscore"] == f1_score(labels, predicted, pos_label="benign")
        assert default["folds"][f]["test"]["macro_f1"] == f1_score(labels, predicted, average="macro")
    assert default["folds"][0]["test"]["fscore"] != explicit["folds"][0]["test"]["fscore"]


def test_positive_label_errors(multiclass):
    binary = clusters(n=200, dim=6, n_classes=2, seed=2)
    with pytest.raises(VlmprobeError, match="not one of the classes"):
        run_linear_probe(*binary, positive_label="nope")
    with pytest.raises(VlmprobeError, match="only applies to 2-class"):
        run_linear_probe(*multiclass, positive_label="class1")


def test_standardization_and_fits_use_training_rows_only(multiclass, multiclass_result):
    """Changing test rows cannot change any fit; changing fold 2 cannot change fold 2's model."""
    x, labels, split, fold = multiclass
    split_array = np.asarray(split)
    moved = x.copy()
    moved[split_array == "test"] = moved[split_array == "test"] * 50 + 1000
    result = run_linear_probe(moved, labels, split, fold)
    assert [r["val"] for r in result["folds"]] == [r["val"] for r in multiclass_result["folds"]]

    in_fold_2 = np.asarray([f == 2 for f in fold])
    moved = x.copy()
    moved[in_fold_2] = moved[in_fold_2] * 50 + 1000
    result = run_linear_probe(moved, labels, split, fold)
    assert result["predictions"]["fold_models"][2] == multiclass_result["predictions"]["fold_models"][2]
    assert result["predictions"]["fold_models"][0] != multiclass_result["predictions"]["fold_models"][0]


def test_deterministic_and_thread_count_independent(multiclass, multiclass_result):
    again = run_linear_probe(*multiclass)
    assert json.dumps(again, sort_keys=True) == json.dumps(multiclass_result, sort_keys=True)
    threaded = run_linear_probe(*multiclass, n_jobs=2)
    assert threaded["predictions"] == multiclass_result["predictions"]
    assert threaded["summary"] == multiclass_result["summary"]


def test_fold_none_or_nan_for_test_rows(multiclass, multiclass_result):
    x, labels, split, fold = multiclass
    as_float = [np.nan if f is None else float(f) for f in fold]  # what a pandas column gives
    assert run_linear_probe(x, labels, split, as_float)["predictions"] == multiclass_result["predictions"]


def test_unconverged_fit_is_recorded(multiclass):
    result = run_linear_probe(*multiclass, max_iter=1)
    assert not result["final"]["solver_info"]["converged"]
    assert result["final"]["solver_info"]["newton_iterations"] == 1


def _broken(kind):
    x, labels, split, fold = clusters(n=200, dim=6, n_classes=3, seed=4)
    labels, split, fold = list(labels), list(split), list(fold)
    train = [i for i, s in enumerate(split) if s == "train"]
    test = [i for i, s in enumerate(split) if s == "test"]
    if kind == "one class":
        labels = ["only"] * len(labels)
    elif kind == "class without training sample":
        labels[test[0]] = "rare"
    elif kind == "class smaller than folds":
        for i in train[:3]:
            labels[i] = "rare"
        labels[test[0]] = "rare"
    elif kind == "nan":
        x[7, 2] = np.nan
    elif kind == "inf":
        x[9, 0] = np.inf
    elif kind == "lengths":
        labels = labels[:-1]
    elif kind == "split value":
        split[train[0]] = "val"
    elif kind == "test row with fold":
        fold[test[0]] = 1
    elif kind == "train row without fold":
        fold[train[0]] = None
    elif kind == "class in one fold":
        for i in train:
            if labels[i] == "class0":
                fold[i] = 0
    return x, labels, split, fold


@pytest.mark.parametrize(
    "kind, message",
    [
        ("one class", "only one class"),
        ("class without training sample", "'rare' has no training sample"),
        ("class smaller than folds", "'rare' has 3 training sample"),
        ("nan", "NaN or Inf .*row 7"),
        ("inf", "NaN or Inf .*row 9"),
        ("lengths", "199 labels for 200 embedding rows"),
        ("split value", "neither 'train' nor 'test'"),
        ("test row with fold", "test rows must have no fold"),
        ("train row without fold", "training rows need a fold"),
        ("class in one fold", "fit for fold 0 has no training sample of class"),
    ],
)
def test_bad_inputs_raise_vlmprobe_error(kind, message):
    with pytest.raises(VlmprobeError, match=message):
        run_linear_probe(*_broken(kind))


def test_auto_solver_uses_liblinear_where_features_outnumber_samples():
    wide = clusters(n=60, dim=200, n_classes=3, seed=2, separation=0.6)
    auto = run_linear_probe(*wide)
    assert auto["protocol"]["solver"] == "liblinear"
    assert auto["predictions"] == run_linear_probe(*wide, solver="liblinear")["predictions"]
    tall = clusters(n=300, dim=8, n_classes=3, seed=2, separation=0.6)
    assert run_linear_probe(*tall)["protocol"]["solver"] == "newton"


def test_liblinear_fits_give_the_same_result_every_run():
    """liblinear draws from one process-wide random stream; fits sharing it from threads varied run to run
    (3 different results in 8 runs before the fits were serialised)."""
    import json

    wide = clusters(n=40, dim=64, n_classes=3, seed=2, separation=0.3)
    runs = {json.dumps(run_linear_probe(*wide, n_jobs=6)["folds"], sort_keys=True, default=str) for _ in range(8)}
    assert len(runs) == 1
