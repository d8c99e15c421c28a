"""Known-truth tests of the probes stage (vlmprobe.probes): each reading against a direct computation or a
planted effect, on small hand-made tables."""

from __future__ import annotations

import numpy as np
import pytest

from vlmprobe.probes.few_shot import simpleshot
from vlmprobe.probes.knn import knn_predict, l2_normalised, top_k_similar
from vlmprobe.probes.logistic import tuned_logistic
from vlmprobe.probes.ranks import rank_agreement, swapped_pairs
from vlmprobe.probes.robustness import robustness_index
from vlmprobe.probes.subgroups import attribute_groups, subgroup_gaps


def blobs(n_per_class: int, n_classes: int, dim: int, spread: float, seed: int):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 3
    y = np.repeat(np.arange(n_classes), n_per_class)
    return centres[y] + spread * rng.normal(size=(y.size, dim)), y


# -- kNN ----------------------------------------------------------------------------------------------


def test_knn_matches_a_direct_computation_of_dinos_rule():
    x, y = blobs(30, 3, 8, 4.0, 0)
    train, test = np.arange(0, 90, 2), np.arange(1, 90, 2)
    predicted, shares = knn_predict(x[train], y[train], x[test], 3, k=5, temperature=0.07)
    # the rule written out, one test row at a time
    bank = x[train] / np.linalg.norm(x[train], axis=1, keepdims=True)
    for position, row in enumerate(test):
        query = x[row] / np.linalg.norm(x[row])
        similarity = bank @ query
        nearest = np.argsort(-similarity)[:5]
        votes = np.zeros(3)
        for j in nearest:
            votes[y[train][j]] += np.exp(similarity[j] / 0.07)
        assert predicted[position] == votes.argmax()
        np.testing.assert_allclose(shares[position], votes / votes.sum(), rtol=1e-4)


def test_knn_matches_scikit_learn_where_the_rule_coincides():
    from sklearn.neighbors import KNeighborsClassifier

    x, y = blobs(40, 4, 16, 5.0, 1)
    train, test = np.arange(0, 160, 2), np.arange(1, 160, 2)
    ours, _ = knn_predict(x[train], y[train], x[test], 4, k=20, temperature=0.07)
    # cosine distance d = 1 - similarity on brute force: DINO's vote is exp((1 - d) / T)
    reference = KNeighborsClassifier(n_neighbors=20, metric="cosine", algorithm="brute", weights=lambda d: np.exp((1 - d) / 0.07))
    reference.fit(x[train], y[train])
    assert np.array_equal(ours, reference.predict(x[test]))
    assert (ours != y[test]).any() and (ours == y[test]).mean() > 0.5  # neither trivial nor broken


def test_top_k_is_blocked_and_honours_exclusions(monkeypatch):
    import vlmprobe.probes.knn as knn

    monkeypatch.setattr(knn, "_BLOCK_ELEMENTS", 50)  # several query blocks
    z = l2_normalised(np.random.default_rng(2).normal(size=(40, 6)))
    sims, index = top_k_similar(z, z, 3, exclude=lambda a, b: np.arange(a, b)[:, None] == np.arange(40)[None, :])
    full = z @ z.T
    np.fill_diagonal(full, -np.inf)
    expected = np.argsort(-full, axis=1)[:, :3]
    assert np.array_equal(index, expected)
    assert not (index == np.arange(40)[:, None]).any()


# -- SimpleShot ---------------------------------------------------------------------------------------


def test_simpleshot_equals_nearest_centroid_written_out():
    x, y = blobs(20, 3, 5, 3.0, 3)
    train, test = np.arange(0, 60, 2), np.arange(1, 60, 2)
    records = simpleshot(x[train], y[train], x[test], y[test], 3, shots=[2], draws=1, seed=7)
    # redo the one draw with the same generator
    from vlmprobe.probes.few_shot import draw_supports

    rng = np.random.default_rng(np.random.SeedSequence(7, spawn_key=(0x5107, 2)))
    supports = draw_supports(y[train], 3, 2, 1, rng)
    mean = x[train].mean(axis=0)
    z = (x - mean) / np.linalg.norm(x - mean, axis=1, keepdims=True)
    centroids = np.stack([z[train][s[0]].mean(axis=0) for s in supports])
    distances = ((z[test][:, None, :] - centroids[None]) ** 2).sum(axis=2)
    accuracy = (distances.argmin(axis=1) == y[test]).mean()
    assert records[0]["accuracy"]["mean"] == pytest.approx(accuracy, abs=1e-6)
    for s, c in zip(supports, range(3)):
        assert (y[train][s] == c).all() and len(set(s[0].tolist())) == 2  # drawn without replacement from class c


def test_simpleshot_improves_with_shots_and_gives_an_interval():
    x, y = blobs(60, 4, 12, 9.0, 4)
    rng = np.random.default_rng(0)
    order = rng.permutation(y.size)
    train, test = order[:180], order[180:]
    records = simpleshot(x[train], y[train], x[test], y[test], 4, shots=[1, 16], draws=200, seed=0)
    one, sixteen = records
    assert one["accuracy"]["mean"] < sixteen["accuracy"]["mean"]
    assert one["accuracy"]["low"] < one["accuracy"]["mean"] < one["accuracy"]["high"]
    assert one["accuracy"]["std"] > sixteen["accuracy"]["std"]


# -- tuned logistic regression ------------------------------------------------------------------------


def test_the_tuned_probe_never_sees_the_test_rows():
    rng = np.random.default_rng(5)
    n, dim = 300, 6
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, dim))
    x[:, 1] += 0.6 * (2 * y - 1)  # a weak real signal everywhere
    test = np.arange(240, 300)
    train = np.arange(240)
    folds = np.arange(240) % 5
    x[:, 0] = 0.0
    x[test, 0] = 5 * (2 * y[test] - 1)  # a test-only signal: perfect if any fit ever saw a test row
    planted = tuned_logistic(x, y, train, test, folds, Cs=[1e-3, 1e-1, 10.0])
    assert planted["test"]["accuracy"] < 0.9
    # the choice of C and the fitted model do not depend on the test rows' features or labels
    shuffled_x, shuffled_y = x.copy(), y.copy()
    shuffled_x[test] = rng.normal(size=(test.size, dim))
    shuffled_y[test] = 1 - y[test]
    other = tuned_logistic(shuffled_x, shuffled_y, train, test, folds, Cs=[1e-3, 1e-1, 10.0])
    assert other["C"] == planted["C"] and other["grid"] == planted["grid"]


def test_the_tuned_probe_picks_strong_regularisation_for_noise_features():
    rng = np.random.default_rng(6)
    n = 200
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 60))
    x[:, 0] += 4.0 * y  # one informative feature among 60 noise features
    result = tuned_logistic(x, y, np.arange(160), np.arange(160, 200), np.arange(160) % 4, Cs=[1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0])
    scores = {row["C"]: row["validation_accuracy_mean"] for row in result["grid"]}
    assert result["C"] < 100.0 and scores[result["C"]] == pytest.approx(max(scores.values()))
    assert result["test"]["accuracy"] > 0.6


# -- rank stability -----------------------------------------------------------------------------------


def test_kendall_tau_of_known_rankings():
    models = ["a", "b", "c", "d"]
    same = rank_agreement(models, [4, 3, 2, 1], [0.9, 0.8, 0.7, 0.6])
    assert same["tau"] == pytest.approx(1.0) and same["swapped"] == []
    one_swap = rank_agreement(models, [4, 3, 2, 1], [0.8, 0.9, 0.7, 0.6])
    assert one_swap["tau"] == pytest.approx(4 / 6) and one_swap["swapped"] == ["a > b"]  # (5 - 1) / 6 pairs
    reversed_ = rank_agreement(models, [4, 3, 2, 1], [1, 2, 3, 4])
    assert reversed_["tau"] == pytest.approx(-1.0) and len(reversed_["swapped"]) == 6
    assert swapped_pairs(["x", "y"], [1, 1], [1, 2]) == []  # a tie is no swap
    assert rank_agreement(["only"], [1.0], [2.0])["tau"] is None


# -- subgroup gaps ------------------------------------------------------------------------------------


def test_a_planted_subgroup_gap_is_found_and_no_gap_covers_zero():
    rng = np.random.default_rng(8)
    n = 2000
    y = rng.integers(0, 2, n)
    groups = np.where(rng.random(n) < 0.5, "F", "M")
    right = np.where(groups == "F", rng.random(n) < 0.95, rng.random(n) < 0.70)
    planted = subgroup_gaps(y, np.where(right, y, 1 - y), groups.tolist(), 2, n_resamples=500, seed=1)
    gap = planted["gaps"]["accuracy"]
    assert gap["worst"] == "M" and gap["best"] == "F"
    assert gap["gap"] == pytest.approx(0.25, abs=0.04) and gap["low"] > 0.15
    right = rng.random(n) < 0.8  # the same accuracy in both groups
    none = subgroup_gaps(y, np.where(right, y, 1 - y), groups.tolist(), 2, n_resamples=500, seed=1)
    for metric in ("accuracy", "balanced_accuracy"):
        assert none["gaps"][metric]["low"] <= 0.0 <= none["gaps"][metric]["high"]


def test_small_groups_are_not_ranked_and_numbers_are_binned():
    result = subgroup_gaps(np.array([0, 1, 0, 1, 0]), np.array([0, 1, 1, 1, 0]), ["a", "a", "a", "a", "b"], 2, min_group_size=2, n_resamples=0)
    assert result["gaps"] == {} and [g["ranked"] for g in result["groups"]] == [True, False]
    labels, how = attribute_groups([str(v) for v in range(100)] + [None], max_levels=20, bins=4)
    assert how == "4 quantile bins" and len(set(labels) - {None}) == 4 and labels[-1] is None


# -- PathoROB robustness index ------------------------------------------------------------------------


def test_robustness_index_near_one_without_the_nuisance_and_near_zero_when_it_dominates():
    rng = np.random.default_rng(9)
    n, dim = 400, 16
    diagnosis = rng.integers(0, 2, n)
    site = rng.integers(0, 3, n)
    diag_axes, site_axes = rng.normal(size=(2, dim)) * 4, rng.normal(size=(3, dim)) * 4
    biology = diag_axes[diagnosis] + rng.normal(size=(n, dim))
    clean = robustness_index(biology, diagnosis, site, k=11, n_resamples=200)
    assert clean["robustness_index"] > 0.95 and clean["low"] > 0.9
    confounded = robustness_index(site_axes[site] + rng.normal(size=(n, dim)), diagnosis, site, k=11, n_resamples=200)
    assert confounded["robustness_index"] < 0.05
    both = robustness_index(diag_axes[diagnosis] + site_axes[site] + rng.normal(size=(n, dim)), diagnosis, site, k=11, n_resamples=0)
    assert both["neighbour_shares"]["SS"] > 0.95  # organised by both: no neighbour differs in exactly one respect


def test_robustness_index_leaves_out_the_query_and_its_group():
    # pairs of identical images (one patient each): without the group rule every first neighbour is the twin
    rng = np.random.default_rng(10)
    base = rng.normal(size=(50, 8))
    x = np.repeat(base, 2, axis=0)
    diagnosis = np.repeat(rng.integers(0, 2, 50), 2)
    site = rng.integers(0, 2, 100)
    patient = np.repeat(np.arange(50), 2)
    by_image = robustness_index(x, diagnosis, site, k=1, n_resamples=0)
    by_patient = robustness_index(x, diagnosis, site, k=1, groups=patient, n_resamples=0)
    assert by_image["neighbour_shares"]["OS"] + by_image["neighbour_shares"]["OO"] == 0.0  # the twin: same diagnosis
    assert by_patient["neighbour_shares"]["OS"] + by_patient["neighbour_shares"]["OO"] > 0.2


# -- one job and the summary --------------------------------------------------------------------------

SETTINGS = {
    "knn": {"enabled": True, "k": 5, "temperature": 0.07},
    "few_shot": {"enabled": True, "shots": [1, 4], "draws": 20},
    "logistic": {"enabled": True, "Cs": [0.01, 1.0], "max_iter": 200},
    "subgroups": {"enabled": True, "min_group_size": 5, "max_levels": 20, "bins": 4},
    "robustness": {"enabled": True, "k": 5},
    "n_resamples": 100,
    "confidence": 0.95,
}


def small_manifest(seed: int = 11):
    import polars as pl

    x, y = blobs(40, 3, 6, 3.0, seed)
    rng = np.random.default_rng(seed)
    n = y.size
    split = np.where(rng.random(n) < 0.25, "test", "train")
    fold = [None if s == "test" else int(i % 4) for i, s in enumerate(split)]
    manifest = pl.DataFrame(
        {
            "sample_id": [f"s{i:03d}" for i in range(n)],
            "labels": [[f"c{v}"] for v in y],
            "split": split.tolist(),
            "fold": fold,
            "meta_site": rng.choice(["a", "b"], n).tolist(),
            "meta_patient": [f"p{i // 2}" for i in range(n)],
        }
    )
    return manifest, x


def test_one_job_reads_the_manifest_split_and_the_group_split():
    from vlmprobe.probes.stage import run_probes

    manifest, x = small_manifest()
    result, predictions = run_probes(manifest, x, SETTINGS, nuisances=["meta_site"], subgroups=["meta_site"], group_column="meta_patient", seed=3)
    test_ids = [s for s, split in zip(manifest["sample_id"], manifest["split"]) if split == "test"]
    assert result["split_level"] == "image" and result["n_test"] == len(test_ids)
    assert set(predictions) == {"knn", "logistic"} and predictions["knn"].sample_ids == test_ids
    assert predictions["knn"].n_folds == 1 and np.array_equal(predictions["knn"].folds[:, 0], predictions["knn"].final)
    assert (predictions["knn"].final == predictions["knn"].labels).mean() == pytest.approx(result["knn"]["test"]["accuracy"])
    assert [r["shots"] for r in result["few_shot"]] == [1, 4]
    assert set(result["subgroups"]["meta_site"]) == {"grouped_by", "knn", "logistic"}
    assert result["robustness"]["meta_site"]["excluded_neighbours"] == "same group"
    # the group-aware split replaces the manifest's
    n = manifest.height
    group_split = (["test" if i < 30 else "train" for i in range(n)], [None if i < 30 else i % 3 for i in range(n)], {})
    grouped, _ = run_probes(manifest, x, SETTINGS, group_split=group_split, seed=3)
    assert grouped["split_level"] == "group" and grouped["n_test"] == 30 and grouped["n_folds"] == 3


def test_a_missing_column_names_the_manifest_columns():
    from vlmprobe.errors import VlmprobeError
    from vlmprobe.probes.stage import run_probes

    manifest, x = small_manifest()
    with pytest.raises(VlmprobeError, match="no column 'meta_sex'.*meta_site"):
        run_probes(manifest, x, SETTINGS, subgroups=["meta_sex"])


def test_the_summary_ranks_models_across_probes(tmp_path):
    import json

    import polars as pl

    from vlmprobe.probes.stage import run_probes
    from vlmprobe.probes.summary import write_probes_summary

    manifest, x = small_manifest()
    results, linear = [], []
    for model, noise in (("good", 0.0), ("bad", 6.0)):
        features = x + noise * np.random.default_rng(1).normal(size=x.shape)
        result, _ = run_probes(manifest, features, SETTINGS, nuisances=["meta_site"], subgroups=["meta_site"], seed=0)
        result.update(dataset="toy", model=model)
        results.append(tmp_path / f"{model}.json")
        results[-1].write_text(json.dumps(result))
        lp = {"dataset": "toy", "model": model, "summary": {"test": {"accuracy": {"mean": 0.9 if model == "good" else 0.5, "std": 0.0}}}}
        linear.append(tmp_path / f"{model}.lp.json")
        linear[-1].write_text(json.dumps(lp))
    out = {name: tmp_path / name for name in ("t.parquet", "t.csv", "t.md", "t.html", "t.png", "f.png", "r.csv")}
    write_probes_summary([str(p) for p in results], [str(p) for p in linear], table_path=out["t.parquet"], csv_path=out["t.csv"], markdown_path=out["t.md"],
                         html_path=out["t.html"], figure_path=out["t.png"], few_shot_path=out["f.png"], ranks_path=out["r.csv"])
    table = pl.read_parquet(out["t.parquet"])
    assert {"linear_probe", "knn", "few_shot", "logistic", "subgroup_gap", "robustness_index"} <= set(table["reading"].to_list())
    ranks = pl.read_csv(out["r.csv"])
    assert ranks.height == 6  # 4 probes: linear probe, kNN, 4-shot, tuned LR
    assert (ranks["tau"] == 1.0).all() and (ranks["n_swapped"] == 0).all()  # the noisy model is last under every probe
    text = out["t.md"].read_text()
    assert "## Rank stability across probes" in text and "## Robustness index (PathoROB)" in text and "meta_site=a (logistic)" in text
    groups = table.filter((pl.col("reading") == "subgroup") & (pl.col("model") == "good") & (pl.col("metric") == "accuracy"))
    assert groups.height == 4  # sites a and b, for kNN and the tuned probe
    assert out["t.png"].stat().st_size > 0 and out["f.png"].stat().st_size > 0


def test_tied_groups_name_two_groups_and_a_zero_gap():
    y = np.array([0, 1] * 20)
    result = subgroup_gaps(y, y, ["a"] * 20 + ["b"] * 20, 2, min_group_size=5, n_resamples=50)
    gap = result["gaps"]["accuracy"]
    assert (gap["worst"], gap["best"], gap["gap"]) == ("a", "b", 0.0)
