"""The study adapters on the real published metadata tables (tests/data/real_tables/README.md names
each source), with stand-in pixels: what each table really holds, and how the adapter reads it."""

from __future__ import annotations

import csv
import logging
from collections import Counter

import pytest
from support import miniatures, real_tables

from vlmprobe.datasets import make_manifest
from vlmprobe.datasets.deepdrid import OFFICIAL_COUNTS
from vlmprobe.datasets.records import DatasetContext
from vlmprobe.formats.manifest import read_manifest

# --- DeepDRiD: deepdrdoc/DeepDRiD regular_fundus_images/regular-fundus-training/regular-fundus-training.csv --------------

OTHER_EYE_ROWS = {"56_r3", "56_l3", "77_r4", "77_r3", "77_l3", "77_l4", "164_r3", "164_r4", "164_l3", "167_r3", "167_l3"}
"""Every row of the published 1,200 whose grade sits in the other eye's column (read from the whole table)."""
DEEPDR_SPEC = {"kind": "deepdrid", "path": "DeepDRiD/regular_fundus_images/regular-fundus-training/regular-fundus-training.csv"}


def _records(tmp_path, kind_module, spec):
    return kind_module.load_records(spec, DatasetContext(name="d", seed=0, data_dir=tmp_path / "out", base_dir=tmp_path))


def test_the_excerpt_is_the_published_rows_unchanged():
    with open(real_tables.DEEPDRID_TRAINING, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["patient_id", "image_id", "image_path", "Overall quality", "left_eye_DR_Level", "right_eye_DR_Level",
                             "patient_DR_Level", "Clarity", "Field definition", "Artifact"]
    moved = {r["image_id"] for r in rows if not r[{"l": "left_eye_DR_Level", "r": "right_eye_DR_Level"}[r["image_id"].split("_")[1][0]]]}
    assert moved == OTHER_EYE_ROWS  # the excerpt keeps all 11 of them, with their patients' other rows


def test_deepdrid_reads_other_eye_rows_decides_each_and_warns_on_disagreement(tmp_path, caplog):
    from vlmprobe.datasets import deepdrid

    real_tables.deepdrid(tmp_path / "DeepDRiD")
    with caplog.at_level(logging.WARNING):
        records = _records(tmp_path, deepdrid, DEEPDR_SPEC)
    by_id = {r.sample_id: r for r in records}
    assert len(records) == 96  # nothing dropped, nothing fails
    moved = {r.sample_id for r in records if r.meta["grade_source"] == "other_eye_column"}
    assert moved == OTHER_EYE_ROWS
    # 56_r3: a right-eye image whose row fills only left_eye_DR_Level = 1, while 56_r2 grades the right eye 0
    assert by_id["56_r3"].labels == ("1",) and by_id["56_r3"].meta["eye"] == "right"
    assert by_id["56_r3"].meta["grade_column"] == "left_eye_DR_Level"
    assert by_id["56_r3"].meta["grade_check"] == "disagrees_with_same_eye"
    assert by_id["56_l3"].labels == ("0",) and by_id["56_l3"].meta["grade_check"] == "disagrees_with_same_eye"
    assert by_id["167_r3"].meta["grade_check"] == "agrees"  # both eyes grade 2
    assert by_id["77_r4"].meta["grade_check"] == "unchecked"  # no row of patient 77 fills its own eye's column
    assert by_id["1_l1"].meta | {"grade_source": "imaged_eye", "grade_check": "agrees"} == by_id["1_l1"].meta
    checks = Counter(r.meta["grade_check"] for r in records if r.sample_id in OTHER_EYE_ROWS)
    assert checks == {"disagrees_with_same_eye": 2, "agrees": 4, "unchecked": 5}
    text = caplog.text
    assert "11 row(s)" in text and "56_r3" in text and "2 row(s) disagree" in text


def test_deepdrid_can_leave_the_other_eye_rows_out(tmp_path):
    from vlmprobe.datasets import deepdrid

    real_tables.deepdrid(tmp_path / "DeepDRiD")
    records = _records(tmp_path, deepdrid, {**DEEPDR_SPEC, "other_eye_rows": "drop"})
    assert len(records) == 96 - 11 and not {r.sample_id for r in records} & OTHER_EYE_ROWS
    assert OFFICIAL_COUNTS["regular-fundus-training.csv"] == 1200


def test_deepdrid_preset_builds_a_manifest_from_the_real_rows(tmp_path):
    real_tables.deepdrid(tmp_path / "data" / "DeepDRiD")
    spec = {**DEEPDR_SPEC, "path": "data/" + DEEPDR_SPEC["path"]}
    out = tmp_path / "m.parquet"
    make_manifest("deepdr", spec, 0, 0.2, 5, out, tmp_path / "out", tmp_path)
    table, provenance = read_manifest(out)
    assert provenance["classes"] == ["0", "1", "2", "3", "4"] and table.num_rows == 96
    assert {"meta_grade_source", "meta_grade_column", "meta_grade_check", "meta_eye"} <= set(table.column_names)


# --- HiCervix: Scu-sen/HiCervix dataset/hierarchy_classification/version2023/train.csv -----------------------------------


def test_hicervix_published_table_facts():
    rows = real_tables.hicervix_rows()
    assert len(rows) == 28160  # the poster's n
    assert list(rows[0]) == ["image_name", "class_name", "class_id", "level_1", "level_2", "level_3"]  # no slide column
    classes = {r["class_name"] for r in rows}
    assert len(classes) == 26  # the poster reports 29
    assert sum(1 for r in rows if r["level_3"]) == 1178 and sum(1 for r in rows if not r["level_2"]) == 1491
    finest = [[r[c] for c in ("level_1", "level_2", "level_3") if r[c]][-1] for r in rows]
    assert finest == [r["class_name"] for r in rows]  # class_name is always the deepest filled level
    assert {r["level_1"] for r in rows} == {"negative", "ASC", "AGC", "microbe"}


@pytest.mark.slow  # 28,160 files
def test_hicervix_adapter_reads_the_whole_published_table(tmp_path):
    from vlmprobe.datasets import hierarchical_csv

    real_tables.hicervix(tmp_path / "HiCervix", per_class=None, pixels=False)
    spec = {"kind": "hierarchical-csv", "root": str(tmp_path / "HiCervix"), "tables": {"train.csv": "train"}}
    by_name = _records(tmp_path, hierarchical_csv, {**spec, "label_column": "class_name"})
    by_level = _records(tmp_path, hierarchical_csv, spec)  # label_level: finest
    assert len(by_name) == 28160 and [r.labels for r in by_name] == [r.labels for r in by_level]
    assert len({r.labels[0] for r in by_name}) == 26
    coarse = _records(tmp_path, hierarchical_csv, {**spec, "label_level": "level_1"})
    assert Counter(r.labels[0] for r in coarse) == {"negative": 10460, "ASC": 6081, "AGC": 5923, "microbe": 5696}


def test_hicervix_preset_builds_from_real_rows(tmp_path):
    real_tables.hicervix(tmp_path / "data" / "HiCervix")
    from support import REPO
    import yaml

    spec = yaml.safe_load((REPO / "config" / "studies" / "takeda2025.yaml").read_text())["datasets"]["hicervix"]
    out = tmp_path / "m.parquet"
    make_manifest("hicervix", spec, 0, 0.2, 5, out, tmp_path / "out", tmp_path)
    table, provenance = read_manifest(out)
    assert len(provenance["classes"]) == 26 and table.num_rows == 26 * 7
    assert {"meta_level_1", "meta_level_2", "meta_level_3", "meta_table"} <= set(table.column_names)


# --- BreaKHis: the file names are the metadata (no table is published); slide 14-13412 under two diagnoses ---------------


def test_breakhis_patient_is_the_slide_and_the_authors_case_is_kept(tmp_path):
    from vlmprobe.datasets import breakhis

    root = miniatures.breakhis(tmp_path / "BreaKHis_v1")
    malignant = root / "histology_slides" / "breast" / "malignant" / "SOB"
    # the published names of the slide filed twice (BreaKHis_v1 dsfold1.txt rows 1718 and 7152)
    for code, subtype in (("DC", "ductal_carcinoma"), ("LC", "lobular_carcinoma")):
        miniatures.write_image(malignant / subtype / f"SOB_M_{code}_14-13412" / "100X" / f"SOB_M_{code}-14-13412-100-001.png", 90)
    records = _records(tmp_path, breakhis, {"kind": "breakhis", "root": str(root)})
    twice = [r for r in records if r.meta["patient"] == "14-13412"]
    assert len(twice) == 2 and {r.meta["case"] for r in twice} == {"SOB_M_DC-14-13412", "SOB_M_LC-14-13412"}
    assert len({r.meta["case"] for r in records}) == len({r.meta["patient"] for r in records}) + 1


# --- ISIC 2019: ISIC_2019_Training_GroundTruth.csv + ISIC_2019_Training_Metadata.csv -------------------------------------


@pytest.mark.slow  # 25,331 files
def test_isic2019_preset_reads_the_published_ground_truth_and_metadata(tmp_path):
    from support import REPO
    import yaml

    from vlmprobe.datasets import onehot_csv

    real_tables.isic2019(tmp_path / "data" / "ISIC2019")
    spec = yaml.safe_load((REPO / "config" / "studies" / "takeda2025.yaml").read_text())["datasets"]["isic2019"]
    records = _records(tmp_path, onehot_csv, spec)
    assert len(records) == 25331 == onehot_csv.expected_count(spec)  # the poster's n
    counts = Counter(r.labels[0] for r in records)
    assert counts == {"NV": 12875, "MEL": 4522, "BCC": 3323, "BKL": 2624, "AK": 867, "SCC": 628, "VASC": 253, "DF": 239}  # UNK: never set
    assert sum(1 for r in records if r.sample_id.endswith("_downsampled")) == 2074
    lesions = [r.meta["lesion_id"] for r in records]
    assert lesions.count("") == 2084 and len(set(lesions) - {""}) == 11847  # the group: empty ones are groups of their own
    by_lesion: dict[str, set[str]] = {}
    for r in records:
        if r.meta["lesion_id"]:
            by_lesion.setdefault(r.meta["lesion_id"], set()).add(r.labels[0])
    assert max(len(v) for v in by_lesion.values()) == 1  # a lesion never has two diagnoses
    assert Counter(r.meta["sex"] for r in records)[""] == 384 and Counter(r.meta["anatom_site_general"] for r in records)[""] == 2631


# --- IU-Xray: indiana_reports.csv + indiana_projections.csv (the Kaggle download's tables) -------------------------------


def test_iu_xray_report_terms_from_the_published_tables(tmp_path, caplog):
    from vlmprobe.datasets import iu_xray

    root = real_tables.iu_xray(tmp_path / "iu-xray")
    with open(root / "indiana_projections.csv", newline="") as handle:
        projections = list(csv.DictReader(handle))
    assert len(projections) == 7466 and Counter(p["projection"] for p in projections) == {"Frontal": 3818, "Lateral": 3648}
    spec = {"kind": "iu-xray", "root": str(root), "label_source": "problems", "views": ["Frontal"], "images_per_report": "first", "min_label_count": 30}
    with caplog.at_level(logging.INFO):
        records = _records(tmp_path, iu_xray, spec)
    # 3,851 reports: 162 without a frontal image, 86 without Problems terms -> 3,603 images, one per report
    assert len(records) == 3603 and "skipped 162 report(s) without a Frontal image and 86 without terms" in caplog.text
    counts = Counter(label for r in records for label in r.labels)
    assert len(counts) == 43 and counts["normal"] == 1343 and counts["cardiomegaly"] == 319 and counts["other"] == 500
    assert sum(1 for r in records if len(r.labels) > 1) == 1492  # multi-label: a report lists several findings
