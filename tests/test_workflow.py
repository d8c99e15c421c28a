"""The workflow end to end on a tiny offline config, and what an incremental re-run re-does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from support import PIXELS, TINY_VIT
from support.images import make_folder_dataset
from support.workflow import planned_outputs, snakemake, write_config

pytestmark = pytest.mark.workflow

SPINE_ONLY = {"umap": {"enabled": False}}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("run")
    make_folder_dataset(workdir / "data" / "alpha", classes=3, per_class=12)
    make_folder_dataset(workdir / "data" / "beta", classes=2, per_class=15, offset=30)
    datasets = {"alpha": {"kind": "imagefolder", "root": "data/alpha"}, "beta": {"kind": "imagefolder", "root": "data/beta"}}
    write_config(workdir, datasets, {"pixels": PIXELS, "vit": TINY_VIT}, **SPINE_ONLY)
    snakemake(workdir)
    return workdir


def edit_config(workdir: Path, change) -> None:
    path = workdir / "config.yaml"
    config = yaml.safe_load(path.read_text())
    change(config)
    write_config(workdir, base=config)


def test_every_output_exists_and_is_sound(finished_run):
    results = finished_run / "results"
    for dataset in ("alpha", "beta"):
        assert (results / "manifests" / f"{dataset}.parquet").is_file()
        for model in ("pixels", "vit"):
            assert (results / "embeddings" / dataset / f"{model}.parquet").is_file()
            probe = json.loads((results / "linear_probe" / dataset / f"{model}.json").read_text())
            assert probe["dataset"] == dataset and probe["model"] == model
            assert (finished_run / "logs" / "embed" / dataset / f"{model}.log").is_file()
            assert (finished_run / "benchmarks" / "embed" / dataset / f"{model}.tsv").is_file()
    summary = pl.read_parquet(results / "summary" / "linear_probe.parquet")
    assert summary.columns == ["dataset", "model", "protocol", "n_samples", "n_classes", "accuracy_mean", "accuracy_std", "fscore_mean", "fscore_std", "f1_macro_mean", "f1_macro_std"]
    assert summary.height == 4
    assert set(summary["n_samples"].to_list()) == {36, 30}
    # brightness-coded classes: raw pixels separate them
    assert summary.filter(pl.col("model") == "pixels")["accuracy_mean"].min() > 0.7  # chance: 0.5 and 0.33
    markdown = (results / "summary" / "linear_probe.md").read_text()
    assert "± " in markdown and "alpha" in markdown
    assert (results / "summary" / "linear_probe_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # paired comparisons: one pair (pixels, vit) per dataset and metric, from each probe's per-sample predictions
    for dataset in ("alpha", "beta"):
        predictions = pl.read_parquet(results / "linear_probe" / dataset / "vit.predictions.parquet")
        assert predictions.columns == ["sample_id", "label"] + [f"fold_{k}" for k in range(5)] + ["final"]
    compare = pl.read_parquet(results / "summary" / "compare_linear_probe.parquet")
    assert compare.height == 4 and set(compare["family_size"]) == {1}
    assert (compare["difference"] >= 0).all() and (compare["low"] <= compare["high"]).all()
    assert (results / "summary" / "compare_linear_probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the probes stage: kNN, few-shot and the tuned probe per table, beside the linear probe, and their paired comparisons
    probes = pl.read_parquet(results / "summary" / "probes.parquet")
    assert {"linear_probe", "knn", "few_shot", "logistic"} <= set(probes["reading"].to_list())
    assert set(probes["dataset"].to_list()) == {"alpha", "beta"} and set(probes["model"].to_list()) == {"pixels", "vit"}
    assert pl.read_parquet(results / "summary" / "compare_knn.parquet").height == 4  # (accuracy, macro F1) x 2 datasets
    assert (results / "summary" / "probes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert planned_outputs(finished_run) == set()  # nothing left to do


def test_adding_a_model_reruns_only_that_model(finished_run, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(finished_run, workdir, symlinks=True)
    edit_config(workdir, lambda c: c["models"].update(rn={"family": "open_clip", "name": "vlmprobe-rn-tiny", "pretrained": None}))
    planned = planned_outputs(workdir)
    assert {p for p in planned if "/embeddings/" in p} == {"results/embeddings/alpha/rn.parquet", "results/embeddings/beta/rn.parquet"}
    assert not any("pixels" in p or "/vit" in p for p in planned), planned
    assert not any("manifests" in p for p in planned)
    assert "results/summary/linear_probe.parquet" in planned


def test_adding_a_dataset_reruns_only_that_dataset(finished_run, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(finished_run, workdir, symlinks=True)
    make_folder_dataset(workdir / "data" / "gamma", classes=2, per_class=10, offset=90)
    edit_config(workdir, lambda c: c["datasets"].update(gamma={"kind": "imagefolder", "root": "data/gamma"}))
    planned = planned_outputs(workdir)
    assert {p for p in planned if "/embeddings/" in p} == {"results/embeddings/gamma/pixels.parquet", "results/embeddings/gamma/vit.parquet"}
    assert {p for p in planned if "manifests" in p} == {"results/manifests/gamma.parquet"}


def test_changing_one_model_reruns_only_that_model(finished_run, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(finished_run, workdir, symlinks=True)
    edit_config(workdir, lambda c: c["models"]["pixels"].update(image_size=8))
    planned = planned_outputs(workdir)
    assert {p for p in planned if "/embeddings/" in p} == {"results/embeddings/alpha/pixels.parquet", "results/embeddings/beta/pixels.parquet"}
    # runtime knobs change no number, so they re-run nothing
    edit_config(workdir, lambda c: c["models"]["pixels"].update(image_size=16) or c["embedding"].update(batch_size=3))
    assert planned_outputs(workdir) == set()


def test_declaring_a_group_reruns_no_manifest_and_no_embedding(finished_run, tmp_path):
    """`group:` adds the group-aware side table; the manifest and the (GPU) embedding tables stay cached."""
    workdir = tmp_path / "w"
    shutil.copytree(finished_run, workdir, symlinks=True)
    edit_config(workdir, lambda c: c["datasets"]["alpha"].update(group="meta_patient"))
    planned = planned_outputs(workdir)
    assert not any("/embeddings/" in p or p.startswith("results/manifests/alpha.parquet") for p in planned), planned
    assert {"results/manifests/alpha.groups.parquet", "results/linear_probe/alpha/pixels.json", "results/linear_probe/alpha/vit.json",
            "results/summary/linear_probe_group_gap.png"} <= planned
    assert not any("/beta/" in p for p in planned), planned


def test_touching_code_reruns_nothing(finished_run, tmp_path):
    """A `git checkout` refreshes script mtimes; cached embeddings must survive it (the code trigger is off)."""
    workdir = tmp_path / "w"
    shutil.copytree(finished_run, workdir, symlinks=True)
    from support import REPO

    for script in (REPO / "scripts").glob("*.py"):
        script.touch()
    assert planned_outputs(workdir) == set()
