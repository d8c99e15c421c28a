"""The studies' real published metadata tables (tests/data/real_tables, sources in its README) laid out
as their downloads are, with stand-in pixels: the adapters read the tables as researchers get them."""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

from . import REPO
from .images import write_image

TABLES = REPO / "tests" / "data" / "real_tables"
DEEPDRID_TRAINING = TABLES / "deepdrid" / "regular-fundus-training.csv"
HICERVIX_TRAIN = TABLES / "hicervix" / "train.csv.gz"


def hicervix_rows() -> list[dict[str, str]]:
    with gzip.open(HICERVIX_TRAIN, "rt", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def hicervix(root: Path, per_class: int | None = 7, pixels: bool = True) -> Path:
    """``root/train.csv`` (the published table, or its first ``per_class`` rows of each class, rows
    unchanged and in the table's order) + ``root/train/<image_name>`` stand-ins (empty files without ``pixels``)."""
    rows = hicervix_rows()
    if per_class is not None:
        seen: dict[str, int] = {}
        kept = []
        for row in rows:
            if seen.get(row["class_name"], 0) < per_class:
                seen[row["class_name"]] = seen.get(row["class_name"], 0) + 1
                kept.append(row)
        rows = kept
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "train.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (root / "train").mkdir(exist_ok=True)
    for i, row in enumerate(rows):
        target = root / "train" / row["image_name"]
        if pixels:
            write_image(target, (13 * int(row["class_id"]) + i) % 256, size=(16, 16), mode="RGB")
        else:
            target.touch()
    return root


def deepdrid(root: Path) -> Path:
    """``root/regular_fundus_images/regular-fundus-training/``: the published table's excerpt (whole rows,
    unchanged) + ``Images/<patient_id>/<image_id>.jpg`` stand-ins."""
    folder = root / "regular_fundus_images" / "regular-fundus-training"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DEEPDRID_TRAINING, folder / "regular-fundus-training.csv")
    with open(DEEPDRID_TRAINING, newline="", encoding="utf-8") as handle:
        for i, row in enumerate(csv.DictReader(handle)):
            grade = row["left_eye_DR_Level"] or row["right_eye_DR_Level"]
            write_image(folder / "Images" / row["patient_id"] / f"{row['image_id']}.jpg", (40 * int(grade) + i) % 256, size=(16, 16), mode="RGB")
    return root


ISIC2019 = TABLES / "isic2019"


def isic2019(root: Path) -> Path:
    """``root/ISIC_2019_Training_GroundTruth.csv``, ``root/ISIC_2019_Training_Metadata.csv`` (as copied, see the
    README) + ``root/ISIC_2019_Training_Input/<image>.jpg`` as empty stand-ins (no pixels: 25,331 files)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("ISIC_2019_Training_GroundTruth.csv", "ISIC_2019_Training_Metadata.csv"):
        with gzip.open(ISIC2019 / f"{name}.gz", "rb") as source, open(root / name, "wb") as target:
            shutil.copyfileobj(source, target)
    images = root / "ISIC_2019_Training_Input"
    images.mkdir(exist_ok=True)
    with open(root / "ISIC_2019_Training_GroundTruth.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            (images / f"{row['image']}.jpg").touch()
    return root


IU_XRAY = TABLES / "iu_xray"


def iu_xray(root: Path) -> Path:
    """``root/indiana_reports.csv``, ``root/indiana_projections.csv`` (as copied, see the README) +
    ``root/images/images_normalized/<filename>`` as empty stand-ins (7,466 files)."""
    images = root / "images" / "images_normalized"
    images.mkdir(parents=True, exist_ok=True)
    for name in ("indiana_reports.csv", "indiana_projections.csv"):
        with gzip.open(IU_XRAY / f"{name}.gz", "rb") as source, open(root / name, "wb") as target:
            shutil.copyfileobj(source, target)
    with open(root / "indiana_projections.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            (images / row["filename"]).touch()
    return root
