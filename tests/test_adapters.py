"""Dataset kinds of the two studies, each on a fabricated miniature of its real download layout."""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import miniatures

from vlmprobe.datasets import (
    KINDS,
    breakhis,
    busi,
    deepdrid,
    is_multilabel,
    load_records,
    make_manifest,
    medmnist,
    onehot_csv,
)
from vlmprobe.datasets.iu_xray import COOCCURRENCE_CSV, STATS_JSON, label_statistics
from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.manifest import read_manifest


def records_of(tmp_path: Path, spec: dict, name: str = "ds"):
    return load_records(name, spec, seed=0, data_dir=tmp_path / "results" / "datasets" / name, base_dir=tmp_path)


def manifest_of(tmp_path: Path, spec: dict, name: str = "ds"):
    out = tmp_path / "results" / "manifests" / f"{name}.parquet"
    make_manifest(name, spec, 0, 0.2, 5, out, tmp_path / "results" / "datasets" / name, tmp_path)
    return read_manifest(out)


def test_every_new_kind_is_registered():
    for kind in ("busi", "breakhis", "onehot-csv", "hierarchical-csv", "deepdrid", "medmnist", "iu-xray"):
        assert kind in KINDS
    assert is_multilabel("iu", {"kind": "iu-xray"}) and not is_multilabel("b", {"kind": "breakhis"})


# --- BUSI ------------------------------------------------------------------------------------------


def test_busi_masks_are_annotations_not_images(tmp_path):
    root = miniatures.busi(tmp_path / "Dataset_BUSI_with_GT")
    records = {r.sample_id: r for r in records_of(tmp_path, {"kind": "busi", "root": str(root)})}
    assert len(records) == 21  # 7 per class; the 21 + 2 mask files are not samples
    assert not any("mask" in Path(r.path).name for r in records.values())
    assert Counter(r.labels[0] for r in records.values()) == {"benign": 7, "malignant": 7, "normal": 7}
    single = records["benign/benign (1)"]
    assert single.annotation_path.endswith("benign (1)_mask.png") and single.meta == {"n_masks": "1"}
    assert all(r.annotation_path is None for r in records.values() if r.labels == ("normal",))  # empty masks
    merged = records["malignant/malignant (2)"]
    assert merged.meta["n_masks"] == "2" and "results/datasets" in merged.annotation_path
    union = np.asarray(Image.open(merged.annotation_path)) > 0
    first = np.asarray(Image.open(root / "malignant" / "malignant (2)_mask.png")) > 0
    second = np.asarray(Image.open(root / "malignant" / "malignant (2)_mask_1.png")) > 0
    assert np.array_equal(union, first | second) and first.any() and second.any()


def test_busi_manifest_and_orphan_mask(tmp_path):
    root = miniatures.busi(tmp_path / "busi")
    table, provenance = manifest_of(tmp_path, {"kind": "busi", "root": str(root)})
    assert table.num_rows == 21 and provenance["classes"] == ["benign", "malignant", "normal"]
    assert sum(path is not None for path in table.column("annotation_path").to_pylist()) == 14
    (root / "benign" / "benign (1).png").unlink()
    with pytest.raises(VlmprobeError, match=r"benign \(1\)_mask.*have no image"):
        records_of(tmp_path, {"kind": "busi", "root": str(root)})
    assert busi.expected_count({}) == 780


# --- BreakHis --------------------------------------------------------------------------------------


def test_breakhis_two_classes_with_subtype_and_magnification_kept(tmp_path):
    root = miniatures.breakhis(tmp_path / "BreaKHis_v1")
    records = records_of(tmp_path, {"kind": "breakhis", "root": str(root)})
    assert len(records) == 4 * 4 * 2  # 4 subtypes x 4 magnifications x 2 images; README.txt ignored
    assert Counter(r.labels[0] for r in records) == {"benign": 16, "malignant": 16}
    first = next(r for r in records if r.sample_id == "SOB_B_A-14-1000AB-40-001")
    assert first.labels == ("benign",)
    assert first.meta == {"subtype": "adenosis", "magnification": "40X", "patient": "14-1000AB", "case": "SOB_B_A-14-1000AB"}
    assert {r.meta["subtype"] for r in records} == {"adenosis", "fibroadenoma", "ductal_carcinoma", "lobular_carcinoma"}


def test_breakhis_options_and_errors(tmp_path):
    root = miniatures.breakhis(tmp_path / "BreaKHis_v1")
    by_subtype = records_of(tmp_path, {"kind": "breakhis", "root": str(root), "label_by": "subtype", "magnifications": [40, 400]})
    assert len(by_subtype) == 16 and {r.meta["magnification"] for r in by_subtype} == {"40X", "400X"}
    assert Counter(r.labels[0] for r in by_subtype)["lobular_carcinoma"] == 4 and "tumor_class" in by_subtype[0].meta
    assert breakhis.expected_count({}) == 7909 and breakhis.expected_count({"magnifications": [40]}) == 1995
    with pytest.raises(VlmprobeError, match="magnifications"):
        records_of(tmp_path, {"kind": "breakhis", "root": str(root), "magnifications": [50]})
    stray = next((root / "histology_slides" / "breast" / "benign").rglob("*.png"))
    stray.rename(stray.with_name("holiday.png"))
    with pytest.raises(VlmprobeError, match="not named like BreaKHis"):
        records_of(tmp_path, {"kind": "breakhis", "root": str(root)})
    stray.with_name("holiday.png").rename(stray.with_name("SOB_M_DC-14-9-40-001.png"))
    with pytest.raises(VlmprobeError, match="named malignant but lies in a 'benign' folder"):
        records_of(tmp_path, {"kind": "breakhis", "root": str(root)})


# --- ISIC 2019 (onehot-csv) ------------------------------------------------------------------------

ISIC_SPEC = {
    "kind": "onehot-csv",
    "path": "isic/ISIC_2019_Training_GroundTruth.csv",
    "root": "isic/ISIC_2019_Training_Input",
    "metadata_path": "isic/ISIC_2019_Training_Metadata.csv",
    "metadata_columns": ["anatom_site_general", "lesion_id", "sex"],
}


def test_isic_onehot_labels_metadata_and_empty_unk(tmp_path, caplog):
    miniatures.isic2019(tmp_path / "isic")
    with caplog.at_level(logging.INFO):
        records = records_of(tmp_path, ISIC_SPEC)
    assert len(records) == 8 * 7
    assert Counter(r.labels[0] for r in records) == {name: 7 for name in miniatures.ISIC_CLASSES[:-1]}
    downsampled = next(r for r in records if r.sample_id.endswith("_downsampled"))
    assert downsampled.path.endswith(f"{downsampled.sample_id}.jpg")
    assert set(records[0].meta) == {"anatom_site_general", "lesion_id", "sex"}
    assert "['UNK'] have no positive row" in caplog.text
    assert onehot_csv.expected_count(ISIC_SPEC) == 25331
    table, provenance = manifest_of(tmp_path, ISIC_SPEC)
    assert len(provenance["classes"]) == 8 and "meta_lesion_id" in table.column_names


def test_onehot_rejects_bad_values_and_rows_without_class(tmp_path):
    root = miniatures.isic2019(tmp_path / "isic")
    csv_path = root / "ISIC_2019_Training_GroundTruth.csv"
    rows = list(csv.reader(open(csv_path)))
    rows[3][2] = "0.5"
    miniatures.write_csv(csv_path, rows[0], rows[1:])
    with pytest.raises(VlmprobeError, match=r"line 4 column 'NV' holds '0.5'"):
        records_of(tmp_path, ISIC_SPEC)
    rows[3][2] = "0.0"
    rows[3][1] = "0.0"
    miniatures.write_csv(csv_path, rows[0], rows[1:])
    with pytest.raises(VlmprobeError, match="1 row.* have no class set"):
        records_of(tmp_path, ISIC_SPEC)


# --- HiCervix (hierarchical-csv) -------------------------------------------------------------------


def test_hicervix_class_name_equals_finest_level_and_levels_kept(tmp_path):
    miniatures.hicervix(tmp_path / "HiCervix")
    base = {"kind": "hierarchical-csv", "root": "HiCervix", "tables": {"train.csv": "train"}}
    by_column = records_of(tmp_path, {**base, "label_column": "class_name"})
    finest = records_of(tmp_path, base)
    assert len(by_column) == 29 * 7 and len({r.labels[0] for r in by_column}) == 29
    assert [r.labels for r in by_column] == [r.labels for r in finest]
    assert set(by_column[0].meta) == {"level_1", "level_2", "level_3", "table"}
    coarse = records_of(tmp_path, {**base, "label_level": "level_1"})
    assert {r.labels[0] for r in coarse} == {"L1-0", "L1-1", "L1-2", "L1-3"}
    both = records_of(tmp_path, {**base, "tables": {"train.csv": "train", "val.csv": "val"}})
    assert len(both) == 29 * 8 and len({r.sample_id for r in both}) == len(both)
    with pytest.raises(VlmprobeError, match="no label at the chosen level"):
        records_of(tmp_path, {**base, "label_level": "level_3"})
    with pytest.raises(VlmprobeError, match=r"has no column\(s\) \['level_4'\]"):
        records_of(tmp_path, {**base, "levels": ["level_1", "level_4"]})


# --- DeepDRiD --------------------------------------------------------------------------------------

DEEPDR_SPEC = {"kind": "deepdrid", "path": "DeepDRiD/regular_fundus_images/regular-fundus-training/regular-fundus-training.csv"}


def test_deepdrid_grade_of_the_imaged_eye(tmp_path):
    miniatures.deepdrid(tmp_path / "DeepDRiD")
    records = records_of(tmp_path, DEEPDR_SPEC)
    assert len(records) == 35 and Counter(r.labels[0] for r in records) == {str(g): 7 for g in range(5)}
    left = next(r for r in records if r.sample_id == "1_l1")
    assert left.path.endswith("Images/1/1_l1.jpg") and left.meta["eye"] == "left" and left.meta["overall_quality"] == "1"
    assert deepdrid.expected_count(DEEPDR_SPEC) == 1200
    table, provenance = manifest_of(tmp_path, DEEPDR_SPEC)
    assert provenance["classes"] == ["0", "1", "2", "3", "4"] and table.num_rows == 35


def test_deepdrid_rejects_unknown_ids_and_grades(tmp_path):
    root = miniatures.deepdrid(tmp_path / "DeepDRiD")
    csv_path = root / "regular_fundus_images" / "regular-fundus-training" / "regular-fundus-training.csv"
    rows = list(csv.reader(open(csv_path)))
    rows[1][3] = "mild"
    miniatures.write_csv(csv_path, rows[0], rows[1:])
    with pytest.raises(VlmprobeError, match="grade 'mild'"):
        records_of(tmp_path, DEEPDR_SPEC)
    rows[1][3], rows[1][1] = "0", "1_x1"
    miniatures.write_csv(csv_path, rows[0], rows[1:])
    with pytest.raises(VlmprobeError, match="not of the form"):
        records_of(tmp_path, DEEPDR_SPEC)


# --- PneumoniaMNIST (medmnist) ---------------------------------------------------------------------


def test_medmnist_parts_and_class_names(tmp_path):
    miniatures.pneumoniamnist(tmp_path / "pneumoniamnist.npz")
    spec = {"kind": "medmnist", "path": "pneumoniamnist.npz", "parts": ["train"]}
    records = records_of(tmp_path, spec)
    assert len(records) == 14 and {r.meta["official_split"] for r in records} == {"train"}
    assert Counter(r.labels[0] for r in records) == {"normal": 7, "pneumonia": 7}
    assert len(records_of(tmp_path, {**spec, "parts": ["train", "val", "test"]})) == 22
    assert medmnist.expected_count(spec) == 4708 and medmnist.expected_count({**spec, "path": "x/pneumoniamnist_224.npz", "parts": ["val", "test"]}) == 1148
    with pytest.raises(VlmprobeError, match="parts"):
        records_of(tmp_path, {**spec, "parts": ["training"]})


# --- IU-Xray ---------------------------------------------------------------------------------------


def test_iu_xray_terms_to_labels(tmp_path):
    miniatures.iu_xray(tmp_path / "iu", copies=1)
    spec = {"kind": "iu-xray", "root": "iu", "synonyms": {"Granulomatous Disease": "calcified granuloma"}}
    records = {r.meta["uid"]: r for r in records_of(tmp_path, spec)}
    assert "6" not in records  # "No Indexing" is not a finding: the report has no label left
    assert records["1"].labels == ("normal",)
    assert records["2"].labels == ("cardiomegaly", "pulmonary artery")
    assert records["7"].labels == ("cardiomegaly",)  # case folded
    assert records["8"].labels == ("calcified granuloma",)  # synonym merged; "normal" beside a finding dropped
    assert all(r.meta["projection"] == "Frontal" for r in records.values())
    assert records["3"].sample_id == "3_IM-0003-1001.dcm"  # the first of its two frontal images
    assert records["2"].meta["findings"] == "The lungs are clear."
    mesh = {r.meta["uid"]: r for r in records_of(tmp_path, {**spec, "label_source": "mesh"})}
    assert mesh["3"].labels == ("lung", "opacity") and mesh["2"].labels == ("cardiomegaly", "pulmonary artery")


def test_iu_xray_views_and_images_per_report(tmp_path):
    miniatures.iu_xray(tmp_path / "iu", copies=1)
    every_frontal = records_of(tmp_path, {"kind": "iu-xray", "root": "iu", "images_per_report": "all"})
    assert len(every_frontal) == 10  # 9 labelled reports, one with two frontal images
    both_views = records_of(tmp_path, {"kind": "iu-xray", "root": "iu", "views": ["Frontal", "Lateral"], "images_per_report": "all"})
    assert len(both_views) == 19 and len({r.sample_id for r in both_views}) == 19


def test_iu_xray_rare_labels_grouped_and_statistics_written(tmp_path):
    miniatures.iu_xray(tmp_path / "iu", copies=7)
    spec = {"kind": "iu-xray", "root": "iu", "min_label_count": 15}
    table, provenance = manifest_of(tmp_path, spec, name="iu")
    # 7 copies: cardiomegaly 21, opacity 21, normal 14; calcified granuloma, granulomatous disease, lung, pulmonary artery 7 each
    assert provenance["multilabel"] and provenance["classes"] == ["cardiomegaly", "normal", "opacity", "other"]
    assert provenance["class_counts"] == {"cardiomegaly": 21, "normal": 14, "opacity": 21, "other": 28}
    stats_dir = tmp_path / "results" / "datasets" / "iu"
    stats = json.loads((stats_dir / STATS_JSON).read_text())
    assert stats["grouped_into_other"] == ["calcified granuloma", "granulomatous disease", "lung", "pulmonary artery"]
    assert stats["normal_dropped_beside_findings"] == 7 and stats["reports_without_terms"] == 7
    assert stats["after_grouping"]["counts"] == {"other": 28, "cardiomegaly": 21, "opacity": 21, "normal": 14}
    rows = list(csv.reader(open(stats_dir / COOCCURRENCE_CSV)))
    assert rows[0] == ["label", "other", "cardiomegaly", "opacity", "normal"]
    assert rows[2][1:] == ["7", "21", "7", "0"]  # cardiomegaly with other (pulmonary artery), itself, opacity, never normal
    assert table.num_rows == 63


def test_label_statistics_by_hand():
    stats = label_statistics([("a",), ("a", "b"), ("b", "c"), ("a",)])
    assert stats["classes"] == ["a", "b", "c"] and stats["counts"] == {"a": 3, "b": 2, "c": 1}
    assert stats["cooccurrence"] == [[3, 1, 0], [1, 2, 1], [0, 1, 1]]
    assert stats["labels_per_sample"] == {1: 2, 2: 2} and stats["imbalance_ratio"] == 3.0
