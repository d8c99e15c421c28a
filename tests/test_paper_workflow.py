"""The Sadman et al. preset end to end in the paper's protocol: a miniature IU-Xray layout with a CheXpert
14-label CSV through ``config/studies/sadman2025.yaml`` (its model swapped for a tiny offline one)."""

from __future__ import annotations

import json

import polars as pl
import pytest
import yaml
from support import REPO, TINY_TIMM_VIT, miniatures
from support.workflow import snakemake, write_config

from vlmprobe.datasets.protocol_splits import uid_split
from vlmprobe.formats.manifest import read_manifest
from vlmprobe.labels import CHEXPERT_CLASSES as CHEXPERT

pytestmark = pytest.mark.workflow


def test_sadman_preset_runs_the_papers_protocol_by_name(tmp_path):
    root = miniatures.iu_xray_chexpert(tmp_path / "data" / "iu-xray", copies=7)
    config = yaml.safe_load((REPO / "config" / "studies" / "sadman2025.yaml").read_text())
    # the preset's model id, so its reference block applies; a timm ViT tower as BiomedCLIP's, in fp32 as the preset
    config["models"] = {"biomedclip": {**TINY_TIMM_VIT, "precision": "fp32"}}
    config["embedding"] = {"device": "cpu", "batch_size": 16, "num_workers": 0}
    config["umap"] = {"enabled": False}
    config["heatmaps"] = {"device": "cpu", "batch_size": 8}
    config["multilabel"]["bootstrap"] = {"n_resamples": 50}
    config["multilabel"]["finetune"].update(device="cpu", num_workers=0, progress=False)
    write_config(tmp_path, base=config)
    snakemake(tmp_path, timeout=1800)  # Grad-CAM of three settings and the projections: minutes on a shared CPU

    results = tmp_path / "results"
    table, meta = read_manifest(results / "manifests" / "iu-xray.parquet")
    assert meta["split_protocol"] == "sadman2025" and "No Finding" in meta["classes"] and table.num_rows == 77
    rows = table.to_pylist()
    part = {row["meta_uid"]: "test" if row["split"] == "test" else "val" if row["fold"] == 0 else "train" for row in rows}
    with open(root / "iuxray_frontal_14labels.csv") as handle:
        order = [line.split(",", 1)[0] for line in handle.read().splitlines()[1:]]
    assert part == uid_split(order)

    summary = pl.read_parquet(results / "summary" / "multilabel.parquet").filter(pl.col("status") == "ok")
    assert sorted(summary["setting"].to_list()) == ["ft", "lp", "zs"]
    assert set(summary["protocol"]) == {"sadman2025"} and set(summary["split_protocol"]) == {"sadman2025"}
    assert set(summary["decision"]) == {"scores scaled per row to [0, 1] (min-max), label decided when > 0.5 (Sadman et al. 2025)"}
    zs, lp = (json.loads((results / "multilabel" / "iu-xray" / "biomedclip" / f"{s}.json").read_text()) for s in ("zs", "lp"))
    assert zs["metrics"]["inter_class_distance"] == lp["metrics"]["inter_class_distance"]  # one frozen tower, as the paper's 31.89 / 31.89
    assert zs["metrics"]["separation_n_samples"] == zs["n_test"]  # every test sample counts, for one class

    reference = pl.read_csv(results / "summary" / "reference" / "multilabel.csv")
    compared = reference.filter(pl.col("status") == "compared")
    assert compared.height == 3 * 8 and set(compared["our_protocol"]) == set(compared["paper_protocol"]) == {"sadman2025"}
    assert reference.filter(pl.col("diff").is_not_null())["our_protocol"].to_list() == ["sadman2025"] * reference["diff"].is_not_null().sum()
    assert "The paper's protocol is sadman2025" in (results / "summary" / "reference" / "multilabel.md").read_text()

    # Grad-CAM as the notebook: its 15 test images (here every test image, drawn in pandas' order), every class, layer -3
    from vlmprobe.formats.maps import read_maps
    from vlmprobe.heatmaps.protocol import notebook_sample

    # the notebook's test_df: the test rows in the label CSV's row order (the manifest is sorted by sample id)
    test_ids = [row["sample_id"] for row in sorted(rows, key=lambda row: int(row["meta_source_row"])) if row["split"] == "test"]
    assert test_ids != [row["sample_id"] for row in rows if row["split"] == "test"]  # the order matters here
    for setting in ("zs", "lp", "ft"):
        maps = read_maps(results / "heatmaps" / "iu-xray" / "biomedclip" / setting / "maps.npz")
        provenance = maps["provenance"]
        assert provenance["protocol"] == "sadman2025" and provenance["target_layer"].endswith("trunk.blocks.3.attn.proj")
        drawn = list(dict.fromkeys(maps["sample_id"].tolist()))
        assert drawn == [test_ids[i] for i in notebook_sample(len(test_ids))]
        in_order = [c for c in CHEXPERT if c in meta["classes"]]  # every class of the manifest, the notebook's order
        assert len(maps["sample_id"]) == len(in_order) * len(drawn) and maps["label"].tolist()[: len(in_order)] == in_order
        assert maps["maps"].max() > 0 and "probability" in maps
    assert (results / "heatmaps" / "iu-xray" / "biomedclip" / "settings_comparison.png").exists()

    # the notebook's further analyses, in their folder and the summary; intervals and the paper's own notes
    folder = results / "multilabel" / "iu-xray" / "biomedclip" / "sadman2025"
    for name in ("threshold_sweep", "class_counts", "loss_curves", "projections_frozen", "projections_ft"):
        assert (folder / f"{name}.png").stat().st_size > 0, name
    analyses = json.loads((folder / "analyses.json").read_text())
    assert analyses["settings"] == ["zs", "ft", "lp"] and len(analyses["threshold_sweep"]["zs"]) == 15
    assert [r["score_map"] for r in analyses["score_maps"]["zs"] if r["printed"]] == ["cosine"]
    counts = dict(analyses["class_counts"])
    assert counts == {c: sum(c in row["labels"] for row in rows) for c in meta["classes"]}
    assert [h["epoch"] for h in analyses["loss_history"]["lp"]] == list(range(1, len(analyses["loss_history"]["lp"]) + 1))
    text = (results / "summary" / "multilabel.md").read_text()
    assert "The notebook's further analyses" in text and "resampled within the single-class groups" in text
    assert all(zs["confidence_intervals"][m]["n_valid"] == 50 for m in ("inter_class_distance", "intra_class_distance", "distance_ratio"))
    assert "1.506 is not its own 31.890 / 21.160 = 1.5071" in (results / "summary" / "reference" / "multilabel.md").read_text()
