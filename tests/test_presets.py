"""The study presets: valid configs whose model names resolve offline, whose datasets build manifests from
fabricated miniatures of their real layouts, whose sample counts match the papers where an adapter knows
them, and whose DAG builds (``snakemake -n``) with the miniatures in place of the real roots."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import polars as pl
import pytest
import yaml
from support import REPO, miniatures, real_tables
from support.workflow import start_snakemake

from vlmprobe.datasets import kind_module, make_manifest
from vlmprobe.datasets.manifest import make_group_split
from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.manifest import read_manifest
from vlmprobe.models import check_spec
from vlmprobe.reference.compare import reference_table

STUDIES = REPO / "config" / "studies"
PRESETS = ("takeda2025", "sadman2025")
AUTHORS_FILES = {"flair", "cxr_clip", "conch", "llava"}  # families reading the authors' downloaded files
AUTHORS_CODE_MODELS: set[str] = set()  # every poster model is active (the authors' releases: their own families)
BRAIN_CLASSES = ["glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"]


def preset(name: str) -> dict:
    return yaml.safe_load((STUDIES / f"{name}.yaml").read_text())


def build_miniatures(workdir: Path) -> None:
    """Every preset dataset, fabricated at the path its preset names under data/."""
    data = workdir / "data"
    miniatures.image_folder(data / "brain-tumor-classification-mri" / "Training", BRAIN_CLASSES, suffix=".jpg")
    miniatures.image_folder(data / "sars-cov-2-ct-scan", ["COVID", "non-COVID"])
    miniatures.pneumoniamnist(data / "medmnist" / "pneumoniamnist.npz")
    miniatures.busi(data / "Dataset_BUSI_with_GT")
    miniatures.breakhis(data / "BreaKHis_v1", slides=4)  # 8 patients per class: enough for the patient-aware split
    real_tables.hicervix(data / "HiCervix")  # the published train.csv, 7 rows of each of its 26 classes
    miniatures.deepdrid(data / "DeepDRiD")
    miniatures.isic2019(data / "ISIC2019")
    miniatures.iu_xray_chexpert(data / "iu-xray", copies=7)  # with the notebook's 14-label CSV


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("presets")
    build_miniatures(path)  # the authors' weight files are not staged: the dry run plans their jobs all the same
    return path


@pytest.mark.parametrize("name", PRESETS)
def test_preset_is_a_valid_config(name):
    from snakemake.utils import validate

    config = preset(name)
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    assert {key: config["split"][key] for key in ("test_fraction", "n_folds")} == {"test_fraction": 0.2, "n_folds": 5}
    assert config["split"].get("protocol", "vlmprobe") == {"takeda2025": "vlmprobe", "sadman2025": "sadman2025"}[name]


def active_models():
    return [(name, model_id, spec) for name in PRESETS for model_id, spec in preset(name)["models"].items()]


@pytest.mark.parametrize("name, model_id, spec", active_models(), ids=[f"{n}-{m}" for n, m, _ in active_models()])
def test_every_active_model_resolves_offline(name, model_id, spec):
    if spec["family"] in AUTHORS_FILES:  # the authors' files are not staged here: the check says where they go
        with pytest.raises(VlmprobeError, match=r"download"):
            check_spec(model_id, spec)
        return
    check_spec(model_id, spec)  # registry name, pretrained tag, hub repository + architecture: no network


def typo(spec: dict) -> dict:
    """The same spec with one character of its name (or pretrained tag) changed."""
    broken = copy.deepcopy(spec)
    key = "pretrained" if isinstance(spec.get("pretrained"), str) else "name"
    broken[key] = broken[key][:-1] + ("X" if broken[key][-1] != "X" else "Y")
    return broken


@pytest.mark.parametrize("model_id", list(preset("takeda2025")["models"]))
def test_a_typo_in_any_model_fails_offline(model_id):
    with pytest.raises(VlmprobeError):
        check_spec(model_id, typo(preset("takeda2025")["models"][model_id]))


def test_every_poster_model_is_active_or_listed_commented_out():
    config = preset("takeda2025")
    mapped = config["reference"]["linear_probe"]["models"]
    reference = reference_table("takeda2025_linear_svm")
    assert {(v["model"], v["backbone"]) for v in mapped.values()} == set(zip(reference["model"], reference["backbone"]))
    assert set(mapped) - set(config["models"]) == AUTHORS_CODE_MODELS
    text = (STUDIES / "takeda2025.yaml").read_text()
    for model_id in AUTHORS_CODE_MODELS:
        assert re.search(rf"^  # {re.escape(model_id)}: #", text, flags=re.MULTILINE), model_id
    assert set(config["reference"]["linear_probe"]["datasets"]) == set(config["datasets"])


def test_preset_sample_counts_match_the_poster_where_the_adapter_knows_them():
    config = preset("takeda2025")
    reference = reference_table("takeda2025_linear_svm")
    poster_n = dict(zip(reference["dataset"], reference["n_samples"]))
    known = {}
    for dataset_id, spec in config["datasets"].items():
        count = getattr(kind_module(dataset_id, spec), "expected_count", lambda spec: None)(spec)
        if count is not None:
            known[dataset_id] = count
            assert count == poster_n[config["reference"]["linear_probe"]["datasets"][dataset_id]], dataset_id
    # imagefolder (BrainMR, SARS-COV-2 CT) and HiCervix's tables cannot know the download's size
    assert set(known) == {"pneumoniamnist", "breastus", "breakhis", "deepdr", "isic2019"}


EXPECTED_CLASSES = {
    # preset dataset -> classes of the miniature, which has every class of the real layout
    "brainmr": 4, "sars-cov-2-ct": 2, "pneumoniamnist": 2, "breastus": 3, "breakhis": 2, "hicervix": 26, "deepdr": 5,
    "isic2019": 8,  # the poster counts 9 (UNK is a column without samples)
}
POSTER_CLASSES_DIFFER = {"isic2019", "hicervix"}  # HiCervix: the published table labels 26 classes, the poster says 29


@pytest.mark.parametrize("dataset_id", list(EXPECTED_CLASSES))
def test_takeda_datasets_build_manifests_from_their_real_layouts(workdir, dataset_id):
    spec = preset("takeda2025")["datasets"][dataset_id]
    out = workdir / "results" / "manifests" / f"{dataset_id}.parquet"
    make_manifest(dataset_id, spec, 0, 0.2, 5, out, workdir / "results" / "datasets" / dataset_id, workdir)
    table, provenance = read_manifest(out)
    assert len(provenance["classes"]) == EXPECTED_CLASSES[dataset_id]
    poster = reference_table("takeda2025_linear_svm").filter(pl.col("dataset") == preset("takeda2025")["reference"]["linear_probe"]["datasets"][dataset_id])
    if dataset_id not in POSTER_CLASSES_DIFFER:
        assert len(provenance["classes"]) == poster["n_classes"][0]
    if spec.get("positive_label"):
        assert spec["positive_label"] in provenance["classes"]
    assert set(table.column("split").to_pylist()) == {"train", "test"}
    assert set(spec.get("nuisances", [])) <= set(table.column_names)  # every declared nuisance is a manifest column
    if spec.get("group"):  # the preset names the identity column: a patient / lesion-aware split beside the image-level one
        make_group_split(out, spec["group"], out.with_suffix(".groups.parquet"))
        frame = pl.from_arrow(table).join(pl.read_parquet(out.with_suffix(".groups.parquet")), on="sample_id")
        assert frame.group_by(spec["group"]).agg(pl.col("group_split").n_unique())["group_split"].max() == 1


def test_takeda_preset_declares_the_groups_its_datasets_know():
    groups = {name: spec.get("group") for name, spec in preset("takeda2025")["datasets"].items() if spec.get("group")}
    assert groups == {"breakhis": "meta_patient", "deepdr": "meta_patient_id", "isic2019": "meta_lesion_id"}


def test_sadman_dataset_builds_a_multilabel_manifest_with_statistics(workdir):
    config = preset("sadman2025")
    spec = config["datasets"]["iu-xray"]
    out = workdir / "results" / "manifests" / "iu-xray.parquet"
    make_manifest("iu-xray", spec, config["seed"], 0.2, 5, out, workdir / "results" / "datasets" / "iu-xray", workdir, config["split"]["protocol"])
    table, provenance = read_manifest(out)
    assert provenance["multilabel"] and "No Finding" in provenance["classes"] and "Cardiomegaly" in provenance["classes"]
    assert provenance["split_protocol"] == "sadman2025" and set(table.column("fold").to_pylist()) == {0, 1, None}
    assert table.num_rows == 77  # every frontal image named by the label CSV
    assert (workdir / "results" / "datasets" / "iu-xray" / "label_stats.json").is_file()
    assert config["multilabel"]["protocol"] == config["reference"]["multilabel"]["protocol"] == "sadman2025"


@pytest.fixture(scope="module")
def dry_runs(workdir) -> dict[str, str]:
    """``snakemake --dry-run`` of both presets, started together (each is mostly interpreter start-up)."""
    processes = {}
    for name in PRESETS:
        processes[name] = start_snakemake(workdir, "--dry-run", config=STUDIES / f"{name}.yaml", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outputs = {}
    for name, process in processes.items():
        text, _ = process.communicate(timeout=300)
        assert process.returncode == 0, f"{name}:\n{text[-5000:]}"
        outputs[name] = text
    return outputs


def job_counts(text: str) -> dict[str, int]:
    table = text.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, flags=re.MULTILINE)}


def test_takeda_preset_dag_builds(dry_runs):
    counts = job_counts(dry_runs["takeda2025"])
    config = preset("takeda2025")
    n_datasets, n_models = len(config["datasets"]), len(config["models"])
    assert counts["embed"] == n_datasets * n_models == 8 * 16  # all 16 image encoders of the poster
    assert counts["check_model"] == n_models
    assert counts["linear_probe"] == 8 * 16
    assert counts["reference_linear_probe"] == 1 and counts["summary_linear_probe"] == 1


def test_sadman_preset_dag_builds(dry_runs):
    counts = job_counts(dry_runs["sadman2025"])
    assert counts["embed"] == 1 and counts["reference_multilabel"] == 1
    assert "linear_probe" not in counts  # IU-Xray is multi-label: the seed-002 probe does not apply
