"""Group-aware splits (a dataset's `group:` column) and the probe's image-level vs group-level gap.

Known truth: identities (patients) whose images are near-duplicates and whose label is the patient's.
With labels independent of anything a new patient shows, a probe that never sees a test patient in
training is at chance; one trained on the image-level split recognises the patient and is near 100 %.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from vlmprobe.datasets import make_manifest
from vlmprobe.datasets.manifest import build_group_split, build_manifest, make_group_split
from vlmprobe.datasets.records import Record
from vlmprobe.datasets.splits import (
    assign_group_splits,
    assign_splits,
    iterative_group_stratification,
)
from vlmprobe.datasets.synthetic_cxr import patient_case, sample_case
from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.manifest import read_group_split, read_manifest
from vlmprobe.linear_probe.probe import run_linear_probe, with_group_level
from vlmprobe.linear_probe.summary import (
    linear_probe_markdown,
    linear_probe_table,
    write_linear_probe_summary,
)


def duplicated_identities(n_groups=60, per_group=5, dim=64, noise=0.05, seed=0):
    """Group centroids + tiny per-image noise; each group's label drawn at random (no shared signal)."""
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(n_groups, dim))
    group_label = np.array(["a", "b"])[rng.permutation(np.arange(n_groups) % 2)]
    groups = np.repeat(np.arange(n_groups), per_group)
    x = centroids[groups] + noise * rng.normal(size=(groups.size, dim))
    return x.astype(np.float32), [str(label) for label in group_label[groups]], groups


def probe_both(x, labels, groups, seed=0):
    split, fold = assign_splits([[name] for name in labels], sorted(set(labels)), False, seed)
    group_split, group_fold, info = assign_group_splits([[name] for name in labels], sorted(set(labels)), groups, False, seed)
    image = run_linear_probe(x, labels, split, fold)
    grouped = run_linear_probe(x, labels, group_split, group_fold)
    return with_group_level(image, grouped, {"column": "meta_patient", "n_groups": len(set(groups)), **info})


def test_group_split_removes_the_identity_leak_and_the_gap_shows():
    x, labels, groups = duplicated_identities()
    result = probe_both(x, labels, groups)
    image_accuracy = result["summary"]["test"]["accuracy"]["mean"]
    group_accuracy = result["group_level"]["summary"]["test"]["accuracy"]["mean"]
    assert image_accuracy > 0.95  # a test image's near-duplicates are in the training rows
    assert group_accuracy < 0.7  # chance is 0.5: nothing carries over to an unseen patient
    assert result["group_gap"]["accuracy"] == pytest.approx(image_accuracy - group_accuracy)
    assert result["group_gap"]["accuracy"] > 0.3
    assert result["group_level"]["column"] == "meta_patient" and result["group_level"]["n_groups"] == 60


def test_no_gap_when_the_label_shows_in_every_image():
    """Control: same duplicated identities, but the label is written into every image (a class direction):
    an unseen patient is as easy as a seen one, so the gap vanishes."""
    x, labels, groups = duplicated_identities(dim=8)
    x = x + 8.0 * (np.asarray(labels) == "b")[:, None] * np.eye(x.shape[1], dtype=np.float32)[0]
    result = probe_both(x, labels, groups)
    assert result["group_level"]["summary"]["test"]["accuracy"]["mean"] > 0.95
    assert abs(result["group_gap"]["accuracy"]) < 0.05


@pytest.mark.parametrize("multilabel", [False, True])
def test_groups_stay_on_one_side_and_in_one_fold(multilabel):
    rng = np.random.default_rng(2)
    sizes = rng.integers(1, 9, size=150)
    groups = np.repeat(np.arange(150), sizes)
    if multilabel:
        classes = ["a", "b", "c", "rare"]
        per_group = [[c for c, p in zip(classes, (0.5, 0.3, 0.3, 0.08)) if rng.random() < p] or ["a"] for _ in range(150)]
    else:
        classes = ["a", "b", "c"]
        per_group = [[str(rng.choice(classes, p=[0.6, 0.3, 0.1]))] for _ in range(150)]
    labels = [per_group[g] for g in groups]
    split, fold, info = assign_group_splits(labels, classes, groups, multilabel, seed=0)
    for g in range(150):
        rows = np.flatnonzero(groups == g)
        assert len({split[i] for i in rows}) == 1 and len({fold[i] for i in rows}) == 1
    assert all((fold[i] is None) == (split[i] == "test") for i in range(len(labels)))
    test_share = np.mean([s == "test" for s in split])
    assert info["test_fraction_realised"] == pytest.approx(test_share, abs=1e-6)
    assert abs(test_share - 0.2) < 0.03
    # stratification: every class's share of test images near 20 %, its training images spread over all folds
    for name in classes:
        rows = [i for i, names in enumerate(labels) if name in names]
        assert abs(np.mean([split[i] == "test" for i in rows]) - 0.2) < 0.08, name
        per_fold = Counter(fold[i] for i in rows if split[i] == "train")
        assert set(per_fold) == {0, 1, 2, 3, 4}
        assert max(per_fold.values()) <= 2.0 * min(per_fold.values()) + 8, (name, per_fold)
    again = assign_group_splits(labels, classes, groups, multilabel, seed=0)
    assert again[:2] == (split, fold)
    assert assign_group_splits(labels, classes, groups, multilabel, seed=1)[:2] != (split, fold)


def test_iterative_group_stratification_meets_the_proportions():
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 3, size=(400, 5)) * (rng.random((400, 5)) < [0.6, 0.3, 0.2, 0.1, 0.05])
    counts[counts.sum(axis=1) == 0, 0] = 1
    sizes = counts.sum(axis=1)
    part = iterative_group_stratification(counts, sizes, [0.2, 0.8], np.random.default_rng(0))
    for label in range(5):
        share = counts[part == 0, label].sum() / counts[:, label].sum()
        assert abs(share - 0.2) < 0.05, label
    assert abs(sizes[part == 0].sum() / sizes.sum() - 0.2) < 0.02


def records_with_patients(n_patients=20, per_patient=3, classes=("benign", "malignant"), missing=0):
    records = []
    for p in range(n_patients):
        for j in range(per_patient):
            index = p * per_patient + j
            patient = "" if index < missing else f"P{p}"
            records.append(Record(sample_id=f"img{index:03d}", path=f"/x/{index}.png", labels=(classes[p % len(classes)],), meta={"patient": patient}))
    return records


def manifest_of(records, **spec):
    return build_manifest("ds", {"kind": "csv", "verify_images": False, **spec}, records, False, 0, 0.2, 5)


def group_split_of(records, column="meta_patient"):
    table = manifest_of(records)
    return table, build_group_split(table, json.loads(table.schema.metadata[b"vlmprobe"]), column)


def test_group_split_table_beside_an_unchanged_manifest():
    table, groups = group_split_of(records_with_patients(missing=2))
    meta = json.loads(groups.schema.metadata[b"vlmprobe"])
    assert groups.column_names == ["sample_id", "group", "group_split", "group_fold"]
    assert groups.column("sample_id").to_pylist() == table.column("sample_id").to_pylist()
    assert meta["column"] == "meta_patient" and meta["seed"] == 0 and meta["n_folds"] == 5
    assert meta["n_without_group"] == 2  # two images of P0 without a value: a group each
    assert meta["n_groups"] == 22  # P0..P19 and the two singletons
    frame = pl.from_arrow(table).join(pl.from_arrow(groups), on="sample_id")
    sides = frame.group_by("group").agg(pl.col("group_split").n_unique(), pl.col("group_fold").n_unique(), pl.len())
    assert sides["group_split"].max() == 1 and sides["group_fold"].max() == 1
    assert sides.filter(pl.col("group").str.starts_with("sample:"))["len"].to_list() == [1, 1]
    # the manifest does not know about groups: declaring one never rewrites it (nor its embeddings)
    assert "group_split" not in table.column_names
    assert manifest_of(records_with_patients(missing=2), group="meta_patient").equals(table)


def test_group_split_file_round_trip_and_stale_file(tmp_path):
    table = manifest_of(records_with_patients())
    from vlmprobe.datasets.manifest import write_manifest

    write_manifest(tmp_path / "m.parquet", table)
    make_group_split(tmp_path / "m.parquet", "meta_patient", tmp_path / "m.groups.parquet")
    ids = table.column("sample_id").to_pylist()
    split, fold, info = read_group_split(tmp_path / "m.groups.parquet", ids)
    assert len(split) == len(ids) and info["n_groups"] == 20
    with pytest.raises(VlmprobeError, match="other samples than its manifest"):
        read_group_split(tmp_path / "m.groups.parquet", ids[1:])


def test_group_errors_name_the_problem_and_the_fix():
    with pytest.raises(VlmprobeError, match=r"`group: meta_slide` names no column.*meta_patient") as error:
        group_split_of(records_with_patients(), "meta_slide")
    assert "set `group:`" in error.value.fix
    with pytest.raises(VlmprobeError, match=r"5 group\(s\), too few for a test hold-out plus 5 CV folds"):
        group_split_of(records_with_patients(n_patients=5, per_patient=8))
    with pytest.raises(VlmprobeError, match=r"'malignant' \(4\) occur in fewer than 6 groups"):
        records = records_with_patients(n_patients=12, per_patient=3)
        records = [r for r in records if not (r.labels == ("malignant",) and int(r.meta["patient"][1:]) > 7)]
        group_split_of(records)


def test_synthetic_cxr_patients_are_near_duplicates_with_shared_labels():
    assert patient_case(0, 7, 64, images_per_patient=1) == sample_case(0, 7, 64)
    first, repeat = patient_case(0, 8, 64, images_per_patient=4), patient_case(0, 9, 64, images_per_patient=4)
    assert first == sample_case(0, 8, 64)
    assert repeat.findings == first.findings and repeat.anatomy.lungs == first.anatomy.lungs
    assert repeat.anatomy.noise_seed != first.anatomy.noise_seed and repeat.anatomy.shift_u != first.anatomy.shift_u
    other = patient_case(0, 12, 64, images_per_patient=4)
    assert other.anatomy.lungs != first.anatomy.lungs


def test_synthetic_cxr_with_patients_builds_a_group_aware_split(tmp_path):
    spec = {"kind": "synthetic-cxr", "n_images": 80, "image_size": 32, "images_per_patient": 4, "multilabel": False,
            "prevalence": {"cardiomegaly": 0.0, "effusion": 0.0, "opacity": 0.0, "pneumothorax": 0.0, "nodule": 0.5}}
    out = tmp_path / "m.parquet"
    make_manifest("scxr", spec, 0, 0.2, 5, out, tmp_path / "data", tmp_path)
    make_group_split(out, "meta_patient", tmp_path / "g.parquet")
    table, _ = read_manifest(out)
    groups = pl.read_parquet(tmp_path / "g.parquet")
    frame = pl.from_arrow(table).join(groups, on="sample_id")
    assert (frame["group"] == frame["meta_patient"]).all()
    per_patient = frame.group_by("meta_patient").agg(pl.len(), pl.col("labels").n_unique(), pl.col("group_split").n_unique())
    assert per_patient.height == 20
    assert per_patient["len"].to_list() == [4] * 20 and per_patient["labels"].max() == 1 and per_patient["group_split"].max() == 1


def result_file(tmp_path: Path, name: str, result: dict, dataset: str, model: str) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({**result, "dataset": dataset, "model": model}))
    return path


def test_summary_reports_both_results_and_the_gap(tmp_path):
    x, labels, groups = duplicated_identities(n_groups=40)
    with_groups = probe_both(x, labels, groups)
    plain = {key: value for key, value in with_groups.items() if key not in ("group_level", "group_gap")}
    paths = [result_file(tmp_path, "a", with_groups, "patients", "m"), result_file(tmp_path, "b", plain, "other", "m")]
    table = linear_probe_table(paths)
    row = table.filter(pl.col("dataset") == "patients").row(0, named=True)
    assert row["accuracy_gap"] == pytest.approx(row["accuracy_mean"] - row["group_accuracy_mean"])
    assert row["accuracy_gap"] > 0.3 and row["n_groups"] == 40 and row["group_column"] == "meta_patient"
    assert table.filter(pl.col("dataset") == "other")["accuracy_gap"].to_list() == [None]
    markdown = linear_probe_markdown(table)
    gap_line = next(line for line in markdown.splitlines() if line.startswith("| patients"))
    assert f"{row['accuracy_gap'] * 100:+.1f} pp" in gap_line
    assert "| other" not in markdown.split("Identity leakage")[1]
    # without any group: the summary keeps its old columns, and no leakage section
    only_plain = linear_probe_table(paths[1:])
    assert "accuracy_gap" not in only_plain.columns and "Identity leakage" not in linear_probe_markdown(only_plain)
    pytest.importorskip("tabulate")
    html = tmp_path / "s.html"
    write_linear_probe_summary(paths, tmp_path / "s.parquet", tmp_path / "s.csv", tmp_path / "s.md", tmp_path / "s.png", html)
    page = html.read_text()
    assert page.count("<table") == 2 and "Identity leakage" in page and page.rstrip().endswith("</html>")
    from vlmprobe.linear_probe.summary import write_group_gap_figure

    write_group_gap_figure(tmp_path / "s.parquet", tmp_path / "gap.png")
    assert (tmp_path / "gap.png").read_bytes()[:4] == b"\x89PNG"


def test_config_schema_takes_group_and_images_per_patient():
    import yaml
    from support import REPO

    from vlmprobe.config_check import config_problems

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert config["datasets"]["synthetic-cxr-patients"]["group"] == "meta_patient"  # the default run shows the gap
    assert config_problems(config, schema) == []
    config["datasets"]["synthetic-cxr-patients"].update(group="patient", images_per_patient=0)
    problems = "\n".join(config_problems(config, schema))
    assert "`datasets.synthetic-cxr-patients.group`: 'patient' does not match '^meta_'" in problems
    assert "`datasets.synthetic-cxr-patients.images_per_patient`: 0 is less than the minimum of 1" in problems
