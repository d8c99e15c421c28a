"""Our tables beside the published ones: difference per cell, 'not run' rows, the Markdown rendering."""

from __future__ import annotations

import math

import polars as pl
import pytest

from vlmprobe.errors import VlmprobeError
from vlmprobe.linear_probe.summary import LINEAR_PROBE_COLUMNS
from vlmprobe.reference.compare import (
    COMPARED,
    NO_RESULT,
    NOT_IN_PRESET_BOTH,
    NOT_IN_PRESET_DATASET,
    NOT_IN_PRESET_MODEL,
    OURS_ONLY,
    compare_linear_probe,
    compare_settings,
    duplicated_datasets,
    reference_table,
    write_linear_probe_comparison,
    write_settings_comparison,
)

LP = "takeda2025-linear-svc"
DATASETS = {"brainmr": "BrainMR", "busi": "BreastUS", "isic": "ISIC2019"}
MODELS = {"clip-b16": {"model": "CLIP", "backbone": "ViT-B/16"}, "vgg": {"model": "VGG16", "backbone": "VGG16"}, "uni": {"model": "UNI", "backbone": "ViT-B/16"}}


def ours_fixture() -> pl.DataFrame:
    rows = [
        # dataset, model, protocol, n, classes, acc, acc_std, f, f_std, f1 macro, std
        ("brainmr", "clip-b16", LP, 2870, 4, 0.931, 0.004, 0.928, 0.005, 0.928, 0.005),  # paper 92 ± 0.7 / 92 ± 0.7
        ("brainmr", "vgg", LP, 2870, 4, 0.771, 0.010, 0.769, 0.012, 0.769, 0.012),  # paper 83 ± 1.1: 6 points below
        ("busi", "clip-b16", LP, 780, 3, 0.845, 0.012, 0.83, 0.015, 0.83, 0.015),
        ("brainmr", "pixels", LP, 2870, 4, 0.60, 0.01, 0.59, 0.01, 0.59, 0.01),  # not a paper model
    ]
    return pl.DataFrame(rows, schema=LINEAR_PROBE_COLUMNS, orient="row")


@pytest.fixture(scope="module")
def takeda() -> pl.DataFrame:
    return reference_table("takeda2025_linear_svm")


def test_every_paper_row_is_kept_and_cells_are_differenced(takeda):
    preset_models = ["clip-b16", "vgg", "pixels"]  # uni mapped but not run by this preset
    comparison = compare_linear_probe(ours_fixture(), takeda, DATASETS, MODELS, ["brainmr", "busi"], preset_models)
    paper = comparison.filter(pl.col("status") != OURS_ONLY)
    assert paper.height == takeda.height == 128  # 16 models x 8 datasets, none vanished
    row = comparison.filter((pl.col("model") == "CLIP") & (pl.col("backbone") == "ViT-B/16") & (pl.col("dataset") == "BrainMR")).row(0, named=True)
    assert row["status"] == COMPARED and row["model_id"] == "clip-b16" and row["dataset_id"] == "brainmr"
    assert math.isclose(row["accuracy_ours"], 93.1) and row["accuracy_paper"] == 92 and math.isclose(row["accuracy_diff"], 1.1)
    assert row["accuracy_differs"] is False  # within 2 x sqrt(0.7^2 + 0.4^2) = 1.6 pp
    vgg = comparison.filter((pl.col("model") == "VGG16") & (pl.col("dataset") == "BrainMR")).row(0, named=True)
    assert math.isclose(vgg["accuracy_diff"], -5.9) and vgg["accuracy_differs"] is True
    status = {(r["model"], r["backbone"], r["dataset"]): r["status"] for r in comparison.iter_rows(named=True)}
    assert status[("UNI", "ViT-B/16", "BrainMR")] == NOT_IN_PRESET_MODEL
    assert status[("CLIP", "ViT-B/16", "HiCervix")] == NOT_IN_PRESET_DATASET
    assert status[("CONCH", "ViT (CoCa based)", "HiCervix")] == NOT_IN_PRESET_BOTH
    assert status[("VGG16", "VGG16", "BreastUS")] == NO_RESULT  # both in the preset, no summary row
    assert status[("CLIP", "ViT-B/16", "ISIC2019")] == NOT_IN_PRESET_DATASET  # mapped, but not a dataset of this preset
    extra = comparison.filter(pl.col("status") == OURS_ONLY).row(0, named=True)
    assert extra["model"] == "pixels" and extra["group"] == "(not in the paper)" and extra["dataset"] == "BrainMR"
    assert math.isclose(extra["accuracy_ours"], 60.0) and extra["accuracy_paper"] is None


def test_mapping_typos_fail_with_the_table_names(takeda):
    with pytest.raises(VlmprobeError, match=r"dataset\(s\) \['BrainMRI'\].*BrainMR"):
        compare_linear_probe(ours_fixture(), takeda, {**DATASETS, "brainmr": "BrainMRI"}, MODELS, [], [])
    with pytest.raises(VlmprobeError, match="ViT-B-16"):
        compare_linear_probe(ours_fixture(), takeda, DATASETS, {"clip-b16": {"model": "CLIP", "backbone": "ViT-B-16"}}, [], [])
    with pytest.raises(VlmprobeError, match="shipped tables"):
        reference_table("takeda2024")


def test_the_posters_copied_columns_are_detected(takeda):
    assert duplicated_datasets(takeda) == {"BreastUS": ("BrainMR", 15, 16)}  # all but FLAIR


def test_markdown_and_csv_rendering(tmp_path):
    ours_path = tmp_path / "linear_probe.parquet"
    ours_fixture().write_parquet(ours_path)
    block = {"table": "takeda2025_linear_svm", "datasets": DATASETS, "models": MODELS}
    comparison = write_linear_probe_comparison(ours_path, block, ["brainmr", "busi"], ["clip-b16", "vgg", "pixels"], tmp_path / "c.csv", tmp_path / "c.md")
    assert pl.read_csv(tmp_path / "c.csv").height == comparison.height == 129
    text = (tmp_path / "c.md").read_text()
    assert "Compared: 3 of 128 paper cells" in text
    assert "| VGG16 | VGG16 | 77.1 ± 1.0 | 83 ± 1.1 | **-5.9** |" in text
    assert "| CLIP | ViT-B/16 | 93.1 ± 0.4 | 92 ± 0.7 | +1.1 |" in text
    assert "| UNI | ViT-B/16 | — | 93 ± 0.3 | — | — | 93 ± 0.3 | — | not run: model not in the preset |" in text
    assert "equal its BrainMR numbers for 15 of 16 models: likely a copy error" in text
    assert "## HiCervix" in text and "n: paper 28,160, ours —" in text
    assert "## BrainMR\n\nn: paper 2,870, ours 2,870; classes: paper 4, ours 4.\n\n| Model |" in text
    assert "| pixels |  | 60.0 ± 1.0 | — | — |" in text


def test_sample_count_mismatch_is_called_out(tmp_path, takeda):
    ours = ours_fixture().with_columns(pl.when(pl.col("dataset") == "busi").then(781).otherwise(pl.col("n_samples")).alias("n_samples"))
    path = tmp_path / "ours.csv"
    ours.write_csv(path)
    write_linear_probe_comparison(path, {"table": "takeda2025_linear_svm", "datasets": DATASETS, "models": MODELS}, ["brainmr", "busi"], ["clip-b16"], tmp_path / "c.csv", tmp_path / "c.md")
    assert "n: paper 780, ours 781 — **n differs by +1**" in (tmp_path / "c.md").read_text()


METRICS = {"f1": "f1_macro", "exact_match": "exact_match", "lrap": "lrap", "ratio": "distance_ratio"}


def test_settings_comparison_keeps_unrun_settings(tmp_path):
    ours = pl.DataFrame(
        {
            "dataset": ["iu", "iu", "iu", "other"],
            "model": ["bm", "bm", "bm", "bm"],
            "setting": ["zs", "lp", "lp-balanced", "ft"],
            "protocol": ["sadman2025"] * 4,
            "status": ["ok", "ok", "ok", "ok"],
            "reason": [None, None, None, None],
            "f1_macro": [0.12, 0.2, 0.25, 0.9],
            "exact_match": [0.0, 0.15, 0.1, 0.9],
            "lrap": [0.3, 0.7, 0.72, 0.9],
            "distance_ratio": [1.5, 1.5, 1.5, 9.0],
        }
    )
    path = tmp_path / "ml.parquet"
    ours.write_parquet(path)
    block = {"table": "sadman2025_iuxray", "ours": "summary_multilabel", "dataset": "iu", "model": "bm", "metrics": METRICS}
    comparison = write_settings_comparison(path, block, tmp_path / "m.csv", tmp_path / "m.md")
    by = {(r["setting"], r["metric"]): r for r in comparison.iter_rows(named=True)}
    assert math.isclose(by[("zs", "f1")]["diff"], 0.12 - 0.105) and by[("zs", "f1")]["status"] == COMPARED
    assert by[("ft", "lrap")]["status"] == NO_RESULT and by[("ft", "lrap")]["ours"] is None  # the "other" dataset's ft row is filtered out
    assert by[("lp-balanced", "f1")]["status"] == OURS_ONLY
    assert comparison.height == 4 * 4
    text = (tmp_path / "m.md").read_text()
    assert "| zs | f1 / f1_macro | 0.120 | 0.105 | +0.015 | sadman2025 | compared |" in text
    nothing = write_settings_comparison(None, block, tmp_path / "n.csv", tmp_path / "n.md", missing_reason="not run: the workflow has no 'summary_multilabel' summary")
    assert nothing.height == 12 and set(nothing["status"]) == {"not run: the workflow has no 'summary_multilabel' summary"}
    skipped = ours.with_columns(
        pl.when(pl.col("setting") == "lp").then(pl.lit("skipped")).otherwise(pl.col("status")).alias("status"),
        pl.when(pl.col("setting") == "lp").then(pl.lit("no text tower for zero-shot")).otherwise(pl.col("reason")).alias("reason"),
    ).filter(pl.col("dataset") == "iu")
    marked = compare_settings(skipped, reference_table("sadman2025_iuxray"), METRICS)
    assert set(marked.filter(pl.col("setting") == "lp")["status"]) == {"not run: no text tower for zero-shot"}
    assert marked.filter(pl.col("setting") == "lp")["ours"].null_count() == 4
    with pytest.raises(VlmprobeError, match="no column"):
        compare_settings(ours, reference_table("sadman2025_iuxray"), {"f1": "f1_samples"})
    with pytest.raises(VlmprobeError, match="reference table has not"):
        compare_settings(ours, reference_table("sadman2025_iuxray"), {"auc": "auc"})


def test_a_paper_number_is_only_set_beside_ours_of_its_protocol(tmp_path):
    """Our recommended-protocol rows never get a paper column or a Δ; the paper's protocol rows do."""
    ours = pl.DataFrame(
        {
            "dataset": ["iu"] * 4,
            "model": ["bm"] * 4,
            "setting": ["zs", "lp", "ft", "zs"],
            "protocol": ["vlmprobe", "vlmprobe", "vlmprobe", "sadman2025"],
            "status": ["ok"] * 4,
            "reason": [None] * 4,
            "f1_macro": [0.30, 0.40, 0.50, 0.11],
            "exact_match": [0.1, 0.2, 0.3, 0.0],
            "lrap": [0.5, 0.6, 0.7, 0.26],
            "distance_ratio": [1.0, 1.0, 2.0, 1.6],
        }
    )
    path = tmp_path / "ml.parquet"
    ours.write_parquet(path)
    block = {"table": "sadman2025_iuxray", "ours": "summary_multilabel", "dataset": "iu", "model": "bm", "metrics": METRICS}
    comparison = write_settings_comparison(path, block, tmp_path / "m.csv", tmp_path / "m.md")
    differenced = comparison.filter(pl.col("diff").is_not_null())
    assert differenced.height == 4 and set(differenced["setting"]) == {"zs"}
    assert set(differenced["our_protocol"]) == set(differenced["paper_protocol"]) == {"sadman2025"}
    zs_f1 = comparison.filter((pl.col("setting") == "zs") & (pl.col("metric") == "f1") & pl.col("paper").is_not_null()).row(0, named=True)
    assert math.isclose(zs_f1["ours"], 0.11) and math.isclose(zs_f1["diff"], 0.11 - 0.105)  # not the vlmprobe zs value 0.30
    paper_lp = comparison.filter((pl.col("setting") == "lp") & pl.col("paper").is_not_null())
    assert paper_lp["ours"].null_count() == 4 and all("protocol sadman2025" in status for status in paper_lp["status"])
    recommended = comparison.filter(pl.col("our_protocol") == "vlmprobe")
    assert recommended.height == 3 * 4 and recommended["paper"].null_count() == 12 and recommended["diff"].null_count() == 12
    assert set(recommended["status"]) == {"ours only (protocol vlmprobe: not comparable)"}
    # every compared cell of the CSV pairs one protocol
    table = pl.read_csv(tmp_path / "m.csv")
    assert (table.filter(pl.col("status") == COMPARED)["our_protocol"] == "sadman2025").all()
    assert "The paper's protocol is sadman2025" in (tmp_path / "m.md").read_text()


def test_linear_probe_rows_of_another_protocol_are_not_compared(takeda):
    other = ours_fixture().with_columns(pl.when(pl.col("model") == "vgg").then(pl.lit("vlmprobe")).otherwise(pl.col("protocol")).alias("protocol"))
    comparison = compare_linear_probe(other, takeda, DATASETS, MODELS, ["brainmr", "busi"], ["clip-b16", "vgg", "pixels"])
    paper_vgg = comparison.filter((pl.col("model") == "VGG16") & (pl.col("dataset") == "BrainMR") & pl.col("accuracy_paper").is_not_null()).row(0, named=True)
    assert paper_vgg["status"] == NO_RESULT and paper_vgg["accuracy_ours"] is None
    listed = comparison.filter(pl.col("our_protocol") == "vlmprobe").row(0, named=True)
    assert listed["accuracy_paper"] is None and listed["accuracy_diff"] is None and "not comparable" in listed["status"]
    compared = comparison.filter(pl.col("status") == COMPARED)
    assert compared.height == 2 and (compared["our_protocol"] == compared["paper_protocol"]).all()


def test_a_reference_table_without_a_known_protocol_must_name_one():
    from vlmprobe.reference.compare import paper_protocol

    assert paper_protocol({"table": "sadman2025_iuxray"}) == "sadman2025"
    assert paper_protocol({"table": "my.csv", "protocol": "vlmprobe"}) == "vlmprobe"
    with pytest.raises(VlmprobeError, match="protocol"):
        paper_protocol({"table": "my.csv"})


def test_paper_notes_say_where_the_paper_disagrees_with_itself():
    """Sadman et al. print zs ratio 1.506, but their own 31.890 / 21.160 = 1.5071 (and no rounding of the two
    distances reaches 1.506); lp and ft are consistent. The notes travel beside the paper's numbers."""
    from vlmprobe.reference.compare import paper_notes

    reference = reference_table("sadman2025_iuxray")
    notes = paper_notes("sadman2025_iuxray", reference)
    assert 31.890 / 21.160 == pytest.approx(1.5071, abs=1e-4) and round(31.8905 / 21.1595, 3) != 1.506
    assert "1.506 is not its own 31.890 / 21.160 = 1.5071" in notes[("zs", "ratio")]
    assert ("lp", "ratio") not in notes and ("ft", "ratio") not in notes
    assert ("zs", "inter_class_distance") in notes and ("ft", "coverage_error") in notes
    comparison = compare_settings(None, reference, METRICS, notes=notes)
    zs_ratio = comparison.filter((pl.col("setting") == "zs") & (pl.col("metric") == "ratio"))
    assert zs_ratio["paper_note"].to_list() == [notes[("zs", "ratio")]]
    made_up = pl.DataFrame({"setting": ["a"], "inter_class_distance": [10.0], "intra_class_distance": [4.0], "ratio": [2.5]})
    assert paper_notes("made_up.csv", made_up) == {}
