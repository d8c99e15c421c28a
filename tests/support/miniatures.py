"""Fabricated miniatures of the studies' public dataset layouts (folder names, file names, CSV columns).

Each builder writes a tiny copy of one download as researchers get it and returns its root. Images
are 16x16 grayscale PNG/JPEG files; every class gets ``per_class`` images, enough for the manifest's
stratified 20 % hold-out + 5 folds (7 per class at least). The preset tests point the study presets
at these in place of the real roots.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from .images import write_image


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_mask(path: Path, box: tuple[int, int, int, int] | None, size=(16, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((size[1], size[0]), np.uint8)
    if box:
        x0, y0, x1, y1 = box
        pixels[y0:y1, x0:x1] = 255
    Image.fromarray(pixels, mode="L").save(path)
    return path


def image_folder(root: Path, classes: list[str], per_class: int = 7, suffix: str = ".png") -> Path:
    """BrainMR (Training/<class>/), SARS-COV-2 CT (COVID/, non-COVID/)."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            write_image(root / name / f"{name}_{i:03d}{suffix}", 30 * c + 5 * i, size=(16, 16))
    return root


def busi(root: Path, per_class: int = 7) -> Path:
    """Dataset_BUSI_with_GT/<class>/'<class> (i).png' + '<class> (i)_mask.png' (+ '_mask_1.png' for some)."""
    for c, name in enumerate(["benign", "malignant", "normal"]):
        for i in range(1, per_class + 1):
            write_image(root / name / f"{name} ({i}).png", 40 * c + 3 * i, size=(16, 16))
            lesion = None if name == "normal" else (2, 2, 6 + i % 4, 7)
            write_mask(root / name / f"{name} ({i})_mask.png", lesion)
            if name != "normal" and i == 2:
                write_mask(root / name / f"{name} ({i})_mask_1.png", (10, 10, 14, 14))
    return root


BREAKHIS_SUBTYPES = {"benign": {"A": "adenosis", "F": "fibroadenoma"}, "malignant": {"DC": "ductal_carcinoma", "LC": "lobular_carcinoma"}}


def breakhis(root: Path, per_slide: int = 2, slides: int = 1) -> Path:
    """BreaKHis_v1/histology_slides/breast/<class>/SOB/<subtype>/SOB_<B|M>_<code>_<slide>/<mag>X/<name>.png

    ``slides`` patients (slides) per subtype."""
    breast = root / "histology_slides" / "breast"
    value = 0
    for tumor_class, subtypes in BREAKHIS_SUBTYPES.items():
        letter = tumor_class[0].upper()
        for code, subtype in subtypes.items():
            for _ in range(slides):
                slide = f"14-{1000 + value}AB"
                for magnification in (40, 100, 200, 400):
                    folder = breast / tumor_class / "SOB" / subtype / f"SOB_{letter}_{code}_{slide}" / f"{magnification}X"
                    for i in range(1, per_slide + 1):
                        write_image(folder / f"SOB_{letter}_{code}-{slide}-{magnification}-{i:03d}.png", value % 256, size=(16, 16))
                        value += 7
    (root / "README.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "README.txt").write_text("not an image\n")
    return root


ISIC_CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


def isic2019(root: Path, per_class: int = 7) -> Path:
    """ISIC_2019_Training_GroundTruth.csv (one-hot, UNK never set) + ISIC_2019_Training_Input/<image>.jpg."""
    rows, meta = [], []
    index = 0
    for c, name in enumerate(ISIC_CLASSES[:-1]):
        for i in range(per_class):
            image = f"ISIC_{index:07d}" + ("_downsampled" if i == 0 else "")
            write_image(root / "ISIC_2019_Training_Input" / f"{image}.jpg", 25 * c + 2 * i, size=(16, 16), mode="RGB")
            rows.append([image, *["1.0" if column == name else "0.0" for column in ISIC_CLASSES]])
            meta.append([image, str(30 + i), "anterior torso", f"HAM_{index:07d}", "female"])
            index += 1
    write_csv(root / "ISIC_2019_Training_GroundTruth.csv", ["image", *ISIC_CLASSES], rows)
    write_csv(root / "ISIC_2019_Training_Metadata.csv", ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"], meta)
    return root


def hicervix(root: Path, n_classes: int = 29, per_class: int = 7) -> Path:
    """train.csv/val.csv (image_name, class_name, class_id, level_1, level_2, level_3) + train/, val/ image folders."""
    for table in ("train", "val"):
        rows = []
        for c in range(n_classes):
            level_1, level_2 = f"L1-{c % 4}", f"L2-{c % 11}"
            level_3 = f"C{c:02d}" if c % 3 else ""  # some classes are annotated only down to level 2
            class_name = level_3 or level_2 + f"-{c}"
            if not level_3:
                level_2 = class_name
            count = per_class if table == "train" else 1
            for i in range(count):
                name = f"{class_name}/{table}_{c:02d}_{i}.jpg"
                write_image(root / table / name, (9 * c + i) % 256, size=(16, 16))
                rows.append([name, class_name, c, level_1, level_2, level_3])
        write_csv(root / f"{table}.csv", ["image_name", "class_name", "class_id", "level_1", "level_2", "level_3"], rows)
    return root


def deepdrid(root: Path, per_grade: int = 7) -> Path:
    """regular_fundus_images/regular-fundus-training/{regular-fundus-training.csv, Images/<patient>/<patient>_<l|r><view>.jpg}"""
    folder = root / "regular_fundus_images" / "regular-fundus-training"
    header = ["patient_id", "image_id", "image_path", "left_eye_DR_Level", "right_eye_DR_Level", "patient_DR_Level", "Overall quality", "Clarity", "Field definition", "Artifact"]
    rows = []
    patient = 1
    for grade in range(5):
        for i in range(per_grade):
            eye = "l" if i % 2 == 0 else "r"
            image_id = f"{patient}_{eye}{1 + i % 2}"
            write_image(folder / "Images" / str(patient) / f"{image_id}.jpg", 40 * grade + i, size=(16, 16), mode="RGB")
            left, right = (grade, "") if eye == "l" else ("", grade)
            rows.append([patient, image_id, f"regular-fundus-training\\{patient}\\{image_id}.jpg", left, right, grade, 1, 8, 10, 0])
            patient += 1
    write_csv(folder / "regular-fundus-training.csv", header, rows)
    return root


def pneumoniamnist(path: Path, per_class: int = 7) -> Path:
    """pneumoniamnist.npz with train/val/test images (N, 28, 28) uint8 and labels (N, 1)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for part, n in (("train", per_class), ("val", 2), ("test", 2)):
        labels = np.array([[c] for c in (0, 1) for _ in range(n)], dtype=np.uint8)
        images = (rng.integers(0, 60, size=(len(labels), 28, 28)) + 120 * labels[:, :, None]).astype(np.uint8)
        arrays[f"{part}_images"], arrays[f"{part}_labels"] = images, labels
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


IU_REPORTS = [
    # uid, MeSH, Problems
    ("1", "normal", "normal"),
    ("2", "Cardiomegaly/borderline;Pulmonary Artery/enlarged", "Cardiomegaly;Pulmonary Artery"),
    ("3", "Lung/hypoinflation;Opacity/lung/base/left", "Lung;Opacity"),
    ("4", "Calcified Granuloma/lung/hilum/right", "Calcified Granuloma"),
    ("5", "normal", "normal"),
    ("6", "No Indexing", "No Indexing"),
    ("7", "Cardiomegaly/mild", "cardiomegaly"),
    ("8", "normal;Granulomatous Disease", "normal;Granulomatous Disease"),
    ("9", "Opacity/lung/base/right", "Opacity"),
    ("10", "Cardiomegaly;Opacity", "Cardiomegaly;Opacity"),
]


def iu_xray(root: Path, copies: int = 7) -> Path:
    """indiana_reports.csv + indiana_projections.csv + images/images_normalized/<uid>_IM-....dcm.png.

    The ten report patterns above are repeated ``copies`` times (uids offset by 100), each report
    with one frontal and one lateral image; report pattern 3 gets a second frontal image.
    """
    reports, projections = [], []
    for copy in range(copies):
        for uid, mesh, problems in IU_REPORTS:
            uid = str(int(uid) + 100 * copy)
            reports.append([uid, mesh, problems, f"Xray Chest PA and Lateral {uid}", "chest pain", "None.", "The lungs are clear.", "No acute disease."])
            views = [("Frontal", "1001"), ("Lateral", "2001")] + ([("Frontal", "1002")] if uid.endswith("3") else [])
            for projection, number in views:
                filename = f"{uid}_IM-{int(uid):04d}-{number}.dcm.png"
                write_image(root / "images" / "images_normalized" / filename, (int(uid) * 7 + int(number)) % 256, size=(16, 16))
                projections.append([uid, filename, projection])
    write_csv(root / "indiana_reports.csv", ["uid", "MeSH", "Problems", "image", "indication", "comparison", "findings", "impression"], reports)
    write_csv(root / "indiana_projections.csv", ["uid", "filename", "projection"], projections)
    return root


CHEXPERT = [
    "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia",
    "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices", "No Finding",
]
CHEXPERT_PATTERNS = {
    # report pattern (uid % 100) -> {class: value}; unlisted classes are blank (not mentioned)
    1: {"No Finding": "1.0"},
    2: {"Cardiomegaly": "1.0", "Enlarged Cardiomediastinum": "-1.0"},
    3: {"Lung Opacity": "1.0", "Atelectasis": "1.0"},
    4: {"Lung Lesion": "1.0", "Pneumothorax": "0.0"},
    5: {},  # nothing mentioned: the notebook's "No Finding"
    6: {"Pleural Effusion": "1", "Edema": "-1"},
    7: {"Cardiomegaly": "1"},
    8: {"Support Devices": "1.0", "Fracture": "0"},
    9: {"Lung Opacity": "1.0", "Pneumonia": "-1.0"},
    10: {"Cardiomegaly": "1.0", "Lung Opacity": "1.0"},
}


def iu_xray_chexpert(root: Path, copies: int = 7, name: str = "iuxray_frontal_14labels.csv") -> Path:
    """:func:`iu_xray` plus a CheXpert-format 14-label CSV keyed by filename, one row per frontal image,
    with the columns of Sadman et al.'s ``iuxray_frontal_14labels.csv`` (uid, filename, report text, 14 classes)."""
    iu_xray(root, copies=copies)
    with open(root / "indiana_projections.csv", newline="") as handle:
        frontal = [row for row in csv.DictReader(handle) if row["projection"] == "Frontal"]
    rows = []
    for row in frontal:
        pattern = CHEXPERT_PATTERNS[int(row["uid"]) % 100]
        rows.append([row["uid"], row["filename"], "chest pain", "None.", "The lungs are clear.", "No acute disease.", *[pattern.get(c, "") for c in CHEXPERT]])
    write_csv(root / name, ["uid", "filename", "indication", "comparison", "findings", "impression", *CHEXPERT], rows)
    return root
