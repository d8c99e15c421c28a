"""The paper protocols piece by piece, each against a direct computation written here (``vlmprobe.multilabel.protocols``,
``vlmprobe.datasets.protocol_splits``, the IU-Xray label CSV, the Takeda F-score rule)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from support import miniatures

from vlmprobe.datasets import make_manifest
from vlmprobe.datasets.protocol_splits import uid_split
from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.manifest import read_manifest
from vlmprobe.labels import CHEXPERT_CLASSES
from vlmprobe.multilabel.metrics import evaluate
from vlmprobe.multilabel.protocols import (
    class_priority,
    first_positive,
    fit_linear_head,
    row_minmax,
    row_minmax_decisions,
    single_class_distances,
    single_class_separation,
)

# ------------------------------------------------------------------------------------------------ decisions


def test_row_min_max_decisions_by_hand():
    logits = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 6.0], [-2.0, 8.0, 7.0], [0.0, 0.0, 0.0]])
    scaled = row_minmax(logits)
    expected = np.array([[0, 0.5, 1], [0, 0, 1], [0, 1, 0.9], [0, 0, 0]])
    assert np.allclose(scaled, expected, atol=1e-7)
    # strict "> 0.5": the middle of row 0 ((2-1)/(2+1e-8) < 0.5) is not decided, a constant row decides nothing
    assert row_minmax_decisions(scaled).tolist() == [[False, False, True], [False, False, True], [False, True, True], [False, False, False]]


# ------------------------------------------------------------------------------------------------ distances


def test_first_positive_follows_the_chexpert_column_order_not_the_sorted_classes():
    classes = ["Atelectasis", "Cardiomegaly", "No Finding"]  # the manifest's (sorted) order
    spec = {"kind": "iu-xray", "labels_csv": "labels.csv"}
    priority = class_priority(classes, spec)
    assert [classes[i] for i in priority] == ["Cardiomegaly", "Atelectasis", "No Finding"]  # CheXpert order
    y = np.array([[1, 1, 0], [1, 0, 1], [0, 0, 1], [0, 1, 1]], dtype=bool)
    assert first_positive(y, priority).tolist() == [1, 0, 2, 1]  # sorted order would give [0, 0, 2, 1]
    assert class_priority(classes, {"kind": "synthetic-cxr"}) == [0, 1, 2]  # no label CSV: manifest order


def test_single_class_distances_and_scores_by_hand():
    x = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 4.0], [0.0, 9.0], [1.0, 9.0]])
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [0, 0, 1]], dtype=bool)
    groups = first_positive(y)  # [0, 0, 1, 1, 2, 2]: rows 1 and 3 count once, for their first label
    assert groups.tolist() == [0, 0, 1, 1, 2, 2]
    c = [np.array([1.0, 0.0]), np.array([10.0, 2.0]), np.array([0.5, 9.0])]
    intra = np.mean([1.0, 2.0, 0.5])
    inter = np.mean([math.dist(c[0], c[1]), math.dist(c[0], c[2]), math.dist(c[1], c[2])])
    got = single_class_distances(x, groups)
    assert math.isclose(got["intra_class_distance"], intra) and math.isclose(got["inter_class_distance"], inter)
    assert math.isclose(got["distance_ratio"], inter / (intra + 1e-9))

    def cosine_distance(a, b):
        return 1 - float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)) if np.linalg.norm(a) and np.linalg.norm(b) else 1.0

    silhouettes = []
    for i in range(len(x)):
        own = [cosine_distance(x[i], x[j]) for j in range(len(x)) if groups[j] == groups[i] and j != i]
        a = np.mean(own)
        b = min(np.mean([cosine_distance(x[i], x[j]) for j in range(len(x)) if groups[j] == g]) for g in set(groups.tolist()) - {groups[i]})
        silhouettes.append((b - a) / max(a, b))
    scores = single_class_separation(x, groups)
    assert math.isclose(scores["silhouette"], float(np.mean(silhouettes)), rel_tol=1e-9)
    spread = [np.mean([math.dist(p, c[g]) for p in x[groups == g]]) for g in range(3)]
    db = np.mean([max((spread[i] + spread[j]) / math.dist(c[i], c[j]) for j in range(3) if j != i) for i in range(3)])
    assert math.isclose(scores["davies_bouldin"], db, rel_tol=1e-9)
    overall = x.mean(axis=0)
    between = sum(2 * np.sum((c[g] - overall) ** 2) for g in range(3))
    within = sum(np.sum((x[groups == g] - c[g]) ** 2) for g in range(3))
    assert math.isclose(scores["fisher_ratio"], between / (within + 1e-9))
    # through the metrics job's function: the same numbers, and intervals from one-class resamples
    result = evaluate(y, np.random.default_rng(0).random(y.shape), y, ["a", "b", "c"], x, n_resamples=50, protocol="sadman2025")
    assert math.isclose(result["metrics"]["inter_class_distance"], inter) and math.isclose(result["metrics"]["silhouette"], scores["silhouette"])
    ours = evaluate(y, np.random.default_rng(0).random(y.shape), y, ["a", "b", "c"], x, n_resamples=0)
    assert not math.isclose(ours["metrics"]["intra_class_distance"], intra)  # multi-label counting differs


# ------------------------------------------------------------------------------------------------ the uid split


def test_uid_split_is_the_notebooks_two_calls_by_report():
    from sklearn.model_selection import train_test_split

    uids = [str(u) for u in np.random.default_rng(3).permutation(np.arange(100, 140))]
    parts = uid_split(uids)
    train, rest = train_test_split(np.array(uids, dtype=object), test_size=0.30, random_state=42, shuffle=True)
    val, test = train_test_split(rest, test_size=0.50, random_state=42, shuffle=True)
    assert {u for u, p in parts.items() if p == "train"} == set(train) and {u for u, p in parts.items() if p == "test"} == set(test)
    assert {u for u, p in parts.items() if p == "val"} == set(val)
    assert (len(train), len(val), len(test)) == (28, 6, 6)
    assert uid_split(uids[::-1]) != parts  # the table's order matters, as in the notebook


def test_iu_xray_label_csv_and_uid_split_manifest(tmp_path):
    root = miniatures.iu_xray_chexpert(tmp_path / "data" / "iu", copies=4)
    spec = {"kind": "iu-xray", "root": "data/iu", "labels_csv": "iuxray_frontal_14labels.csv", "labels_key": "filename"}
    out = tmp_path / "m.parquet"
    make_manifest("iu", spec, 0, 0.2, 5, out, tmp_path / "d", tmp_path, split_protocol="sadman2025")
    table, meta = read_manifest(out)
    rows = table.to_pylist()
    assert meta["split_protocol"] == "sadman2025" and meta["n_folds"] == 2
    assert len(rows) == 4 * 11  # every frontal image of the label CSV (report 3 has two)
    by_id = {row["sample_id"]: row for row in rows}
    assert by_id["2_IM-0002-1001.dcm"]["labels"] == ["Cardiomegaly"]  # -1 (uncertain) -> negative under `zeros`
    assert by_id["5_IM-0005-1001.dcm"]["labels"] == ["No Finding"]  # nothing positive
    assert by_id["9_IM-0009-1001.dcm"]["labels"] == ["Lung Opacity"]
    assert set(meta["classes"]) <= set(CHEXPERT_CLASSES)
    part = {}
    for row in rows:
        kind = "test" if row["split"] == "test" else "val" if row["fold"] == 0 else "train"
        assert part.setdefault(row["meta_uid"], kind) == kind  # every image of a report on one side
    order = list(dict.fromkeys(row["uid"] for row in csv_rows(root / "iuxray_frontal_14labels.csv")))
    assert part == uid_split(order)
    assert sorted(list(part.values()).count(k) for k in ("train", "val", "test")) == [6, 6, 28]
    # the other policy and the uid key
    ones = {**spec, "uncertain": "ones"}
    make_manifest("iu", ones, 0, 0.2, 5, out, tmp_path / "d", tmp_path, split_protocol="sadman2025")
    by_id = {row["sample_id"]: row for row in read_manifest(out)[0].to_pylist()}
    assert by_id["2_IM-0002-1001.dcm"]["labels"] == ["Cardiomegaly", "Enlarged Cardiomediastinum"]
    stats = json.loads((tmp_path / "d" / "label_stats.json").read_text())
    assert stats["uncertain"] == "ones" and stats["labels_key"] == "filename"


def csv_rows(path):
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_label_csv_keyed_by_uid_and_bad_values(tmp_path):
    root = miniatures.iu_xray_chexpert(tmp_path / "data" / "iu", copies=2)
    rows = csv_rows(root / "iuxray_frontal_14labels.csv")
    by_uid = {}
    for row in rows:
        by_uid.setdefault(row["uid"], {k: v for k, v in row.items() if k != "filename"})
    miniatures.write_csv(root / "by_uid.csv", list(next(iter(by_uid.values()))), [list(r.values()) for r in by_uid.values()])
    spec = {"kind": "iu-xray", "root": "data/iu", "labels_csv": "by_uid.csv"}
    out = tmp_path / "m.parquet"
    make_manifest("iu", spec, 0, 0.2, 5, out, tmp_path / "d", tmp_path, split_protocol="sadman2025")
    table = read_manifest(out)[0].to_pylist()
    assert len(table) == 20 and {row["meta_uid"] for row in table} == set(by_uid)  # first frontal image per report
    bad = dict(by_uid)
    first = next(iter(bad))
    bad[first] = {**bad[first], "Cardiomegaly": "yes"}
    miniatures.write_csv(root / "bad.csv", list(bad[first]), [list(r.values()) for r in bad.values()])
    with pytest.raises(VlmprobeError, match=r"'yes' is not 1, 0, -1 or blank"):
        make_manifest("iu", {**spec, "labels_csv": "bad.csv"}, 0, 0.2, 5, out, tmp_path / "d", tmp_path)
    with pytest.raises(VlmprobeError, match="uncertain"):
        make_manifest("iu", {**spec, "uncertain": "ignore"}, 0, 0.2, 5, out, tmp_path / "d", tmp_path)


# ------------------------------------------------------------------------------------------------ the lp head


def torch_linear_probe(train_x, train_y, val_x, val_y, weight, bias, orders, lr=1e-4, patience=5):
    """The notebook's loop written with torch (nn.Linear, AdamW, CosineAnnealingLR, BCE, early stopping)."""
    import torch
    import torch.nn.functional as F

    torch.set_default_dtype(torch.float64)
    try:
        head = torch.nn.Linear(train_x.shape[1], train_y.shape[1])
        with torch.no_grad():
            head.weight.copy_(torch.as_tensor(weight))
            head.bias.copy_(torch.as_tensor(bias))
        optim = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-2)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=len(orders))
        x, y, vx, vy = (torch.as_tensor(a) for a in (train_x, train_y, val_x, val_y))
        best_val, bad, best = float("inf"), 0, None
        for order in orders:
            for start in range(0, len(order), 24):
                rows = torch.as_tensor(order[start : start + 24])
                optim.zero_grad()
                F.binary_cross_entropy_with_logits(head(x[rows]), y[rows]).backward()
                optim.step()
            with torch.no_grad():
                val_loss = np.mean([F.binary_cross_entropy_with_logits(head(vx[s : s + 24]), vy[s : s + 24]).item() for s in range(0, len(vx), 24)])
            sched.step()
            if val_loss < best_val - 1e-4:
                best_val, bad, best = val_loss, 0, (head.weight.detach().numpy().copy(), head.bias.detach().numpy().copy())
            else:
                bad += 1
                if bad >= patience:
                    break
        return best
    finally:
        torch.set_default_dtype(torch.float32)


def test_numpy_linear_probe_equals_torch_adamw_with_cosine_schedule():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(70, 6)) * 3
    y = (x[:, :4] + rng.normal(size=(70, 4)) > 0.5).astype(float)
    weight, bias = rng.uniform(-0.5, 0.5, (4, 6)), rng.uniform(-0.4, 0.4, 4)
    orders = [rng.permutation(50) for _ in range(10)]
    for lr in (1e-4, 3e-2):  # 3e-2 overfits quickly: early stopping keeps an earlier epoch
        mine = fit_linear_head(x[:50], y[:50], x[50:], y[50:], weight, bias, orders, lr=lr)
        theirs = torch_linear_probe(x[:50], y[:50], x[50:], y[50:], weight, bias, orders, lr=lr)
        assert np.allclose(mine.weight, theirs[0], rtol=1e-9, atol=1e-12) and np.allclose(mine.bias, theirs[1], rtol=1e-9, atol=1e-12)
        assert not np.allclose(mine.weight, weight)


# ------------------------------------------------------------------------------------------------ Takeda F-score


def test_takeda_fscore_rule_binary_or_macro():
    from sklearn.metrics import f1_score

    from vlmprobe.linear_probe.probe import run_linear_probe

    rng = np.random.default_rng(1)
    labels = np.array(["normal"] * 30 + ["pneumonia"] * 90)  # imbalanced 1:3, as PneumoniaMNIST
    x = rng.normal(size=(120, 5)) + (labels == "pneumonia")[:, None] * 0.8
    split = ["test" if i % 5 == 0 else "train" for i in range(120)]
    fold = [None if s == "test" else i % 4 for i, s in enumerate(split)]
    macro = run_linear_probe(x, labels.tolist(), split, fold, positive_label="pneumonia", fscore="macro")
    binary = run_linear_probe(x, labels.tolist(), split, fold, positive_label="pneumonia", fscore="binary")
    test = np.flatnonzero(np.array(split) == "test")
    assert macro["predictions"]["test_rows"] == test.tolist()
    predicted = np.array(["normal", "pneumonia"])[np.asarray(macro["predictions"]["fold_models"][0])]
    truth = labels[test]
    assert 0 < f1_score(truth, predicted, average="macro") < f1_score(truth, predicted, pos_label="pneumonia")  # the rules differ here
    assert math.isclose(macro["folds"][0]["test"]["fscore"], f1_score(truth, predicted, average="macro"))
    assert math.isclose(binary["folds"][0]["test"]["fscore"], f1_score(truth, predicted, pos_label="pneumonia"))
    assert macro["protocol"]["fscore"] == "macro F1" and binary["protocol"]["fscore"] == "binary F1 of positive_label"
    with pytest.raises(VlmprobeError, match="needs 2 classes"):
        run_linear_probe(x, ["normal"] * 30 + ["pneumonia"] * 60 + ["other"] * 30, split, fold, fscore="binary")


def f1_ranges(n_negative: int, n_positive: int, accuracy: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """(binary F1 of the positive class, macro F1) over every confusion matrix with this accuracy (to 0.5 pp)."""
    binary, macro = [], []
    errors = round((1 - accuracy) * (n_negative + n_positive))
    for fn in range(0, errors + 1):
        fp = errors - fn
        tp, tn = n_positive - fn, n_negative - fp
        if tp < 0 or tn < 0:
            continue
        f_pos = 2 * tp / (2 * tp + fp + fn)
        f_neg = 2 * tn / (2 * tn + fp + fn)
        binary.append(f_pos)
        macro.append((f_pos + f_neg) / 2)
    return (min(binary), max(binary)), (min(macro), max(macro))


def test_the_takeda_fscore_choices_follow_from_the_posters_pairs():
    """PneumoniaMNIST 93 % / 90 %: only macro F1; BreakHis 83 % / 87 %: only binary F1 (the preset's reasoning)."""
    (b_low, b_high), (m_low, m_high) = f1_ranges(1214, 3494, 0.93)
    assert not b_low <= 0.90 <= b_high and m_low <= 0.90 <= m_high
    assert (round(b_low, 3), round(b_high, 3)) == (0.950, 0.955) and (round(m_low, 3), round(m_high, 3)) == (0.899, 0.915)
    (b_low, b_high), (m_low, m_high) = f1_ranges(2480, 5429, 0.83)
    assert b_low <= 0.87 <= b_high and not m_low <= 0.87 <= m_high
    assert (round(b_low, 3), round(b_high, 3)) == (0.859, 0.89) and (round(m_low, 3), round(m_high, 3)) == (0.759, 0.823)
    import yaml
    from support import REPO

    datasets = yaml.safe_load((REPO / "config" / "studies" / "takeda2025.yaml").read_text())["datasets"]
    assert datasets["pneumoniamnist"]["fscore"] == "macro" and datasets["breakhis"]["fscore"] == "binary"


# ------------------------------------------------------------------------------------------------ the three settings' jobs


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    from support import TINY_VIT
    from support.multilabel import synthetic_manifest

    from vlmprobe.embed import embed_manifest

    folder = tmp_path_factory.mktemp("paper")
    manifest = synthetic_manifest(folder, 80, 32)
    embeddings = folder / "vit.parquet"
    embed_manifest(manifest, "vit-tiny", TINY_VIT, embeddings, device="cpu", batch_size=40, num_workers=0, threads=1)
    return manifest, embeddings, TINY_VIT


def test_paper_zero_shot_is_the_raw_dot_product_with_bare_class_names(tiny_study, tmp_path):
    import torch

    from vlmprobe.formats.embeddings import aligned
    from vlmprobe.formats.predictions import read_predictions
    from vlmprobe.models import load_encoder
    from vlmprobe.multilabel.metrics import evaluate_files
    from vlmprobe.multilabel.zero_shot import run_zero_shot_files

    manifest, embeddings, spec = tiny_study
    path = tmp_path / "zs.parquet"
    run_zero_shot_files(manifest, embeddings, "vit-tiny", spec, path, ["ignored {label}"], rule="softmax", protocol="sadman2025")
    stored = read_predictions(path)
    table, matrix, meta, _ = aligned(manifest, embeddings, spec)
    test = np.flatnonzero(np.asarray(table["split"].to_list()) == "test")
    torch.manual_seed(0)
    encoder = load_encoder("vit-tiny", spec, "cpu")
    with torch.inference_mode():
        text = encoder.encode_text(list(meta["classes"])).float().numpy().astype(np.float64)
    logits = matrix[test].astype(np.float64) @ text.T  # no normalisation, no logit scale
    expected = (logits - logits.min(1, keepdims=True)) / (logits.max(1, keepdims=True) - logits.min(1, keepdims=True) + 1e-8)
    np.testing.assert_allclose(stored.scores, expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(stored.predicted, expected > 0.5)
    assert stored.metadata["protocol"] == "sadman2025" and stored.metadata["details"]["prompts"]["normal"] == ["normal"]
    result = evaluate_files(manifest, path, embeddings, spec, n_resamples=10)  # the protocol the predictions record
    assert result["protocol"] == "sadman2025" and result["metrics"]["silhouette"] is not None
    with pytest.raises(VlmprobeError, match="protocol 'sadman2025'"):
        evaluate_files(manifest, path, embeddings, spec, n_resamples=0, protocol="vlmprobe")


def test_paper_linear_probe_job_writes_row_min_max_decisions_of_its_head(tiny_study, tmp_path):
    from vlmprobe.formats.embeddings import aligned
    from vlmprobe.formats.heads import load_head
    from vlmprobe.formats.predictions import read_predictions
    from vlmprobe.multilabel.linear_probe import run_probe_files

    manifest, embeddings, spec = tiny_study
    run_probe_files(manifest, embeddings, spec, tmp_path / "lp.parquet", tmp_path / "lp.head.safetensors", protocol="sadman2025")
    stored, head = read_predictions(tmp_path / "lp.parquet"), load_head(tmp_path / "lp.head.safetensors")
    table, matrix, _, _ = aligned(manifest, embeddings, spec)
    test = np.flatnonzero(np.asarray(table["split"].to_list()) == "test")
    np.testing.assert_allclose(stored.scores, row_minmax(head.logits(matrix[test])), atol=1e-5)
    np.testing.assert_array_equal(stored.predicted, stored.scores > 0.5)
    details = stored.metadata["details"]
    assert stored.metadata["protocol"] == "sadman2025" and details["lr"] == 1e-4 and details["batch_size"] == 24
    assert 1 <= details["best_epoch"] <= details["epochs_run"] <= 10 and details["n_validation"] == int((table["fold"] == 0).sum())


def test_paper_finetuning_uses_the_notebooks_settings(tiny_study, tmp_path):
    from support import TINY_RN
    from support.multilabel import finetune

    from vlmprobe.formats.predictions import read_predictions
    from vlmprobe.multilabel.finetune import FinetuneSettings

    manifest, _, _ = tiny_study
    info = finetune(manifest, {**TINY_RN, "image_size": 32}, tmp_path / "ft", FinetuneSettings(epochs=1, lr=1.0, protocol="sadman2025"))
    settings = info["settings"]
    assert (settings["epochs"], settings["patience"], settings["batch_size"], settings["lr"], settings["head_lr"]) == (10, 5, 24, 1e-5, 1e-5)
    assert settings["monitor"] == "loss" and info["loss_weights"] == {"unweighted": True} and info["epochs_run"] >= 6
    stored = read_predictions(tmp_path / "ft" / "ft.predictions.parquet")
    assert stored.metadata["protocol"] == "sadman2025"
    np.testing.assert_allclose(stored.scores.min(axis=1), 0.0, atol=1e-9)
    np.testing.assert_array_equal(stored.predicted, stored.scores > 0.5)


# ------------------------------------------------------------------------------------------------ distance intervals


def test_single_class_distance_intervals_resample_within_classes():
    """An ordinary resample misses a one-sample class most of the time; within-class resampling never does,
    every resample counts, and each resample's distances are compute_separability's on the resampled rows."""
    from vlmprobe.multilabel.metrics import bootstrap_intervals
    from vlmprobe.multilabel.protocols import single_class_distances, stratified_bootstrap_weights

    rng = np.random.default_rng(5)
    groups = np.array([0] * 20 + [1] * 12 + [2] * 1 + [3] * 2)
    x = rng.normal(size=(len(groups), 6)) + groups[:, None]
    y = groups[:, None] == np.arange(4)[None, :]
    weights = stratified_bootstrap_weights(groups, 40, seed=3)
    for g in range(4):
        assert (weights[:, groups == g].sum(axis=1) == (groups == g).sum()).all()
    assert np.array_equal(weights, stratified_bootstrap_weights(groups, 40, seed=3))
    # resample 0 by hand: repeat the rows, then the notebook's distances
    rows = np.repeat(np.arange(len(groups)), weights[0])
    direct = single_class_distances(x[rows], groups[rows])
    scores = rng.random(y.shape)
    intervals = bootstrap_intervals(y, scores, y, x, n_resamples=40, seed=3, distance_indicator=y, distance_strata=groups)
    from vlmprobe.multilabel.metrics import weighted_metrics

    resampled = weighted_metrics(y, scores, y, x, weights[:1], distance_indicator=y)
    assert math.isclose(resampled["inter_class_distance"][0], direct["inter_class_distance"], rel_tol=1e-9)
    assert math.isclose(resampled["intra_class_distance"][0], direct["intra_class_distance"], rel_tol=1e-9)
    for name in ("inter_class_distance", "intra_class_distance", "distance_ratio"):
        assert intervals[name]["n_valid"] == 40 and intervals[name]["low"] is not None and "within" in intervals[name]["resampling"]
    # the ordinary bootstrap drops resamples without class 2: no interval from that remainder
    plain = bootstrap_intervals(y, scores, y, x, n_resamples=40, seed=3, distance_indicator=y)
    assert plain["distance_ratio"]["n_valid"] < 40 and plain["distance_ratio"]["low"] is None
    assert plain["distance_ratio"]["note"].startswith("not estimable")


@pytest.mark.filterwarnings("ignore:CUDA is not available")  # the context objects are built, not entered, on a CPU
def test_finetune_precision_is_the_notebooks_under_sadman2025():
    """fp16 autocast for training steps only (the notebook's _train_epoch); validation without autocast (_inference).
    The CUDA dtype choice itself is in run_finetune; here the switch every step goes through."""
    import dataclasses

    import torch

    from vlmprobe.multilabel.finetune.model import Run

    fields = {f.name: None for f in dataclasses.fields(Run) if f.default is dataclasses.MISSING}
    paper = Run(**{**fields, "paper": True, "amp_dtype": torch.float16})
    ours = Run(**{**fields, "paper": False, "amp_dtype": torch.bfloat16})
    assert paper.autocast().fast_dtype == torch.float16 and paper.autocast().device == "cuda"
    assert paper.autocast(training=False).device == "cpu" and not paper.autocast(training=False)._enabled
    assert ours.autocast(training=False).fast_dtype == torch.bfloat16  # our protocol validates under autocast too
    from vlmprobe.multilabel.protocols import FINETUNE

    assert "GradScaler" in FINETUNE["precision"] and "fp32 validation" in FINETUNE["precision"]
