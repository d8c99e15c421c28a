"""DICOM, the form clinical images arrive in: pixels as a viewer shows them, checked step by step against
pydicom's own functions on real files (pydicom's test files and the pydicom-data wheel), compressed copies
against their originals, tags as metadata, labels by folder / CSV / tag, and a workflow run on a folder of them."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", reason="pydicom is a vlmprobe dependency; this environment lacks it")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.pixels import apply_modality_lut, apply_voi_lut, apply_windowing  # noqa: E402

from vlmprobe.datasets.records import DatasetContext  # noqa: E402
from vlmprobe.dicom import display_array, dicom_reference, read_dataset  # noqa: E402
from vlmprobe.errors import VlmprobeError  # noqa: E402
from vlmprobe.images import load_image  # noqa: E402


def real(name: str) -> str:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} ships in the pydicom-data wheel (a test dependency), which is not installed")
    return path


def reference_display(ds, index: int = 0) -> np.ndarray:
    """pydicom's own steps, then the 8-bit mapping of the range its VOI step maps into."""
    values = apply_modality_lut(ds.pixel_array, ds)
    shown = apply_voi_lut(values, ds, index=index)
    if ds.get("VOILUTSequence"):
        low, high = 0, 2 ** ds.VOILUTSequence[index].LUTDescriptor[2] - 1
    elif "WindowCenter" in ds:
        stored = (0, 2**ds.BitsStored - 1) if ds.PixelRepresentation == 0 else (-(2 ** (ds.BitsStored - 1)), 2 ** (ds.BitsStored - 1) - 1)
        slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
        low, high = sorted(v * slope + intercept for v in stored)
    else:
        low, high = float(shown.min()), float(shown.max())
    if ds.PhotometricInterpretation == "MONOCHROME1":
        shown = (high + low) - shown
    return np.round((np.clip(shown, low, high) - low) * 255.0 / (high - low)).astype(np.uint8)


@pytest.mark.parametrize(
    "name, what",
    [
        ("CT_small.dcm", "signed 16-bit CT, rescale to HU, no window: full range"),
        ("MR_small.dcm", "MR with a window"),
        ("mlut_18.dcm", "IHE Modality LUT Sequence, 12 bits stored, signed"),
        ("vlut_04.dcm", "IHE VOI LUT Sequence"),
        ("RG1_UNCR.dcm", "MONOCHROME1 chest CR, 15 bits stored, window 15000/30000"),
        ("RG3_UNCR.dcm", "MONOCHROME1 CR extremity, 10 bits stored"),
        ("693_UNCR.dcm", "CQ500 head CT"),
    ],
)
def test_every_grey_step_is_pydicoms(name, what):
    ds = pydicom.dcmread(real(name))
    assert np.array_equal(display_array(ds, path=name), reference_display(pydicom.dcmread(real(name)))), what


def test_modality_lut_and_signedness_reach_hounsfield_units():
    ds = pydicom.dcmread(real("CT_small.dcm"))
    assert ds.PixelRepresentation == 1 and ds.pixel_array.dtype == np.int16
    hu = apply_modality_lut(ds.pixel_array, ds)
    assert hu.min() < -800 and ds.RescaleIntercept == -1024  # air, in Hounsfield units
    mlut = pydicom.dcmread(real("mlut_18.dcm"))
    assert mlut.BitsStored == 12 and mlut.pixel_array.min() < 0  # 12 of 16 bits, sign-extended by pydicom


def test_monochrome1_is_inverted():
    ds = pydicom.dcmread(real("RG1_UNCR.dcm"))
    shown = display_array(ds).astype(float)
    stored = ds.pixel_array.astype(float)
    assert np.corrcoef(shown.ravel()[::97], stored.ravel()[::97])[0, 1] < -0.99  # high values are dark


def test_voi_choices(tmp_path):
    path = real("CT_small.dcm")
    ds = pydicom.dcmread(path)
    hu = apply_modality_lut(ds.pixel_array, ds)
    brain = np.asarray(load_image(dicom_reference(path, voi="40/80")))[:, :, 0]
    windowed = ds.copy()
    windowed.WindowCenter, windowed.WindowWidth = 40.0, 80.0
    expected = apply_windowing(hu, windowed)
    low, high = -1024 + -(2**15), -1024 + 2**15 - 1
    assert np.array_equal(brain, np.round((np.clip(expected, low, high) - low) * 255 / (high - low)).astype(np.uint8))
    full = np.asarray(load_image(dicom_reference(path, voi="none")))[:, :, 0]
    assert full.min() == 0 and full.max() == 255
    mr = real("MR_small.dcm")
    with pytest.raises(VlmprobeError, match="no VOI view 3"):
        load_image(dicom_reference(mr, voi="3"))
    with pytest.raises(VlmprobeError, match="no window named 'LUNG'"):
        load_image(dicom_reference(mr, voi="LUNG"))


def test_orientation_is_kept():
    path = real("JPEG-LL.dcm")  # 1024 rows x 256 columns
    ds = pydicom.dcmread(path)
    image = load_image(path)
    assert (ds.Rows, ds.Columns) == (1024, 256) and image.size == (256, 1024)  # PIL: (width, height)
    assert np.array_equal(np.asarray(image)[:, :, 0], display_array(ds))


@pytest.mark.parametrize(
    "compressed, original",
    [
        ("RG1_J2KR.dcm", "RG1_UNCR.dcm"),  # JPEG 2000 lossless (pylibjpeg-openjpeg)
        ("MR_small_jp2klossless.dcm", "MR_small.dcm"),
        ("MR_small_RLE.dcm", "MR_small.dcm"),
        ("693_J2KR.dcm", "693_UNCR.dcm"),
        ("US1_J2KR.dcm", "US1_UNCR.dcm"),  # colour, YBR_RCT
        ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm"),  # 10 frames
        ("JPGLosslessP14SV1_1s_1f_8b.dcm", None),  # JPEG lossless (pylibjpeg-libjpeg)
    ],
)
def test_compressed_copies_decode_to_their_originals(compressed, original):
    shown = np.asarray(load_image(dicom_reference(real(compressed), frame=0)))
    if original is None:
        assert shown.std() > 0
        return
    assert np.array_equal(shown, np.asarray(load_image(dicom_reference(real(original), frame=0))))


def test_lossy_copies_stay_close():
    lossy = np.asarray(load_image(real("RG1_J2KI.dcm"))).astype(float)
    exact = np.asarray(load_image(real("RG1_UNCR.dcm"))).astype(float)
    assert np.abs(lossy - exact).mean() < 2


def test_colour_files_become_rgb():
    rgb = np.asarray(load_image(real("SC_rgb.dcm")))
    ybr = np.asarray(load_image(real("SC_ybr_full_uncompressed.dcm")))
    difference = np.abs(rgb.astype(int) - ybr.astype(int))
    assert difference.max() <= 8 and difference.mean() < 1  # YBR converted to RGB by pydicom (YBR rounding)
    palette = np.asarray(load_image(real("OBXXXX1A.dcm")))
    assert palette.shape == (600, 800, 3) and (palette[..., 0] != palette[..., 2]).any()
    sixteen = np.asarray(load_image(real("SC_rgb_16bit.dcm")))
    assert np.abs(sixteen.astype(int) - rgb.astype(int)).max() <= 1


def test_a_missing_decoder_names_the_file_and_the_package(monkeypatch):
    from pydicom.pixels.decoders import JPEG2000LosslessDecoder

    monkeypatch.setattr(JPEG2000LosslessDecoder, "_available", {})
    path = real("MR_small_jp2klossless.dcm")
    with pytest.raises(VlmprobeError) as caught:
        load_image(path)
    assert path in str(caught.value) and "JPEG 2000" in str(caught.value) and "pylibjpeg-openjpeg" in caught.value.fix


def test_bad_files_are_named(tmp_path):
    fake = tmp_path / "x.dcm"
    fake.write_bytes(b"not dicom at all" * 20)
    with pytest.raises(VlmprobeError, match="not a DICOM file"):
        load_image(str(fake))
    with pytest.raises(VlmprobeError, match="does not exist"):
        load_image(str(tmp_path / "gone.dcm"))
    with pytest.raises(VlmprobeError, match="frame 12"):
        load_image(dicom_reference(real("emri_small.dcm"), frame=12))


# --- the dataset kind ----------------------------------------------------------------------------------------

FOLDER = {
    "CT": ["CT_small.dcm", "693_UNCR.dcm", "693_J2KR.dcm", "J2K_pixelrep_mismatch.dcm", "explicit_VR-UN.dcm"],
    "MR": ["MR_small.dcm", "MR_small_RLE.dcm", "MR2_J2KI.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm", "emri_small.dcm"],
}


def dicom_folder(root, layout=FOLDER, extra_no_pixels: bool = True):
    for label, names in layout.items():
        for name in names:
            (root / label).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(real(name), root / label / name)
    if extra_no_pixels:
        shutil.copyfile(real("rtplan.dcm"), root / "CT" / "rtplan.dcm")  # no pixel data: left out
    return root


def records_of(tmp_path, spec):
    from vlmprobe.datasets import dicom

    return dicom.load_records(spec, DatasetContext(name="d", seed=0, data_dir=tmp_path / "out", base_dir=tmp_path))


def test_labels_from_folders_and_tags_as_metadata(tmp_path):
    root = dicom_folder(tmp_path / "dicom")
    records = records_of(tmp_path, {"kind": "dicom", "root": str(root), "tags": ["SeriesDescription"]})
    assert len(records) == 10 and {r.labels[0] for r in records} == {"CT", "MR"}
    ct = next(r for r in records if r.sample_id == "CT/CT_small")
    assert ct.meta["PatientID"] == "1CT1" and ct.meta["Manufacturer"] == "GE MEDICAL SYSTEMS" and ct.meta["Modality"] == "CT"
    assert {"StudyInstanceUID", "ViewPosition", "PatientSex", "PatientAge", "BodyPartExamined", "KVP", "BurnedInAnnotation",
            "ManufacturerModelName", "SeriesDescription"} <= set(ct.meta)  # fmt: skip
    emri = next(r for r in records if r.sample_id == "MR/emri_small")
    assert emri.meta["n_frames"] == "10" and emri.meta["frame"] == "5"  # the middle frame by default
    assert np.asarray(load_image(emri.path)).shape == (64, 64, 3)


def test_frames_all_and_labels_from_a_csv_or_a_tag(tmp_path):
    root = dicom_folder(tmp_path / "dicom")
    every = records_of(tmp_path, {"kind": "dicom", "root": str(root), "frames": "all"})
    assert len(every) == 9 + 10 and "MR/emri_small#0009" in {r.sample_id for r in every}
    by_tag = records_of(tmp_path, {"kind": "dicom", "root": str(root), "label_tag": "Manufacturer"})
    assert "TOSHIBA_MEC" in {r.labels[0] for r in by_tag}  # files without the tag are left out with a warning
    uid = pydicom.dcmread(root / "CT" / "CT_small.dcm", stop_before_pixels=True).SOPInstanceUID
    with open(tmp_path / "by_uid.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["SOPInstanceUID", "finding"], [uid, "normal"]])
    by_uid = records_of(tmp_path, {"kind": "dicom", "root": str(root), "labels_csv": str(tmp_path / "by_uid.csv"),
                                   "label_key": "SOPInstanceUID", "label_column": "finding"})  # fmt: skip
    assert [(r.sample_id, r.labels) for r in by_uid] == [("CT/CT_small", ("normal",))]
    with open(root / "labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["path", "label"], ["MR/MR_small.dcm", "a"], ["CT/missing.dcm", "b"]])
    with pytest.raises(VlmprobeError, match="name no DICOM file"):
        records_of(tmp_path, {"kind": "dicom", "root": str(root), "labels_csv": "labels.csv"})


def test_files_outside_class_folders_are_named(tmp_path):
    root = dicom_folder(tmp_path / "dicom")
    shutil.copyfile(real("CT_small.dcm"), root / "IM0001")  # PACS exports have no suffix; found by the DICM preamble
    with pytest.raises(VlmprobeError, match="outside any class"):
        records_of(tmp_path, {"kind": "dicom", "root": str(root)})


@pytest.mark.slow
@pytest.mark.workflow
def test_workflow_on_a_folder_of_real_dicom_files(tmp_path):
    """Real DICOM files of pydicom and pydicom-data, CT vs MR by sub-folder: the patient-aware split groups by
    meta_PatientID and the nuisance probe reads the manufacturer."""
    import polars as pl
    from support import PIXELS
    from support.workflow import snakemake, write_config

    layout = {  # 5 CT patients (two images of the CQ500 head), 4 MR patients and one MR file without a PatientID
        "CT": ["CT_small.dcm", "693_UNCR.dcm", "693_J2KR.dcm", "J2K_pixelrep_mismatch.dcm", "explicit_VR-UN.dcm", "bad_sequence.dcm"],
        "MR": ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR2_UNCR.dcm", "MR2_J2KI.dcm",
               "MR-SIEMENS-DICOM-WithOverlays.dcm", "emri_small.dcm"],
    }  # fmt: skip
    dicom_folder(tmp_path / "dicom", layout)
    datasets = {"scans": {"kind": "dicom", "root": "dicom", "group": "meta_PatientID", "nuisances": ["meta_Manufacturer"]}}
    write_config(
        tmp_path, datasets, {"pixels": PIXELS}, split={"n_folds": 2, "test_fraction": 0.3},
        umap={"enabled": False}, multilabel={"enabled": False}, heatmaps={"enabled": False},
        nuisance={"n_permutations": 5, "shortcut_curve": {"enabled": False}},
    )  # fmt: skip
    snakemake(tmp_path)
    results = tmp_path / "results"
    manifest = pl.read_parquet(results / "manifests" / "scans.parquet")
    assert manifest.height == 13 and {"meta_PatientID", "meta_Manufacturer", "meta_Modality"} <= set(manifest.columns)
    groups = pl.read_parquet(results / "manifests" / "scans.groups.parquet").join(manifest, on="sample_id")
    assert groups.group_by("meta_PatientID").agg(pl.col("group_split").n_unique())["group_split"].max() == 1
    nuisance = pl.read_parquet(results / "summary" / "nuisance.parquet")
    assert "meta_Manufacturer" in set(nuisance["target"])


def test_a_pacs_export_without_suffixes_labelled_by_a_tag(tmp_path):
    """pydicom's ``dicomdirtests``: a DICOMDIR patient / study / series hierarchy whose image files have no
    suffix (found by their DICM preamble), beside DICOMDIR files and READMEs, which are left out."""
    import pydicom.data

    root = tmp_path / "export"
    shutil.copytree(pydicom.data.get_testdata_file("DICOMDIR", read=False).rsplit("/", 1)[0], root)
    records = records_of(tmp_path, {"kind": "dicom", "root": str(root), "label_tag": "Modality"})
    assert len(records) == 31 and {r.labels[0] for r in records} == {"CR", "CT", "MR"}
    assert {r.meta["PatientID"] for r in records} == {"77654033", "98890234"}
    cr = next(r for r in records if r.sample_id == "77654033/CR1/6154")
    assert cr.meta["PhotometricInterpretation"] == "MONOCHROME1" and cr.meta["Manufacturer"] == "Agfa-Gevaert AG"
    for record in records:  # every image decodes
        assert load_image(record.path).mode == "RGB"


def test_a_missing_decoder_stops_the_manifest_with_the_package_to_install(tmp_path, monkeypatch):
    from pydicom.pixels.decoders import JPEG2000LosslessDecoder

    from vlmprobe.datasets import make_manifest

    root = dicom_folder(tmp_path / "dicom", {"CT": ["693_J2KR.dcm"] * 1, "MR": ["MR_small_jp2klossless.dcm"]}, extra_no_pixels=False)
    monkeypatch.setattr(JPEG2000LosslessDecoder, "_available", {})
    with pytest.raises(VlmprobeError) as caught:
        make_manifest("scans", {"kind": "dicom", "root": str(root)}, 0, 0.2, 5, tmp_path / "m.parquet", tmp_path / "out", tmp_path)
    assert "2 unreadable image(s)" in caught.value.problem and "693_J2KR.dcm" in caught.value.problem
    assert caught.value.fix.startswith("install the pixel-data decoders") and "pylibjpeg-openjpeg" in caught.value.fix
    assert not (tmp_path / "m.parquet").exists()


def test_enhanced_multiframe_rescale_and_window_come_from_its_functional_groups():
    """eCT_Supplemental (Enhanced CT): no top-level rescale or window; both sit in the shared functional groups."""
    from pydicom.pixels import pixel_array

    path = real("eCT_Supplemental.dcm")
    ds = pydicom.dcmread(path)
    assert "WindowCenter" not in ds and "RescaleIntercept" not in ds
    flat = pydicom.dcmread(path)  # the same file with the groups written at the top level, where pydicom reads them
    flat.RescaleSlope, flat.RescaleIntercept, flat.WindowCenter, flat.WindowWidth = 1.0, -1024.0, 49.0, 102.0
    for frame in range(int(ds.NumberOfFrames)):
        hu = apply_modality_lut(pixel_array(flat, index=frame), flat)
        bits = flat.BitsStored
        stored = (0, 2**bits - 1) if flat.PixelRepresentation == 0 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        low, high = stored[0] - 1024, stored[1] - 1024  # the range pydicom maps a window into, through the rescale
        expected = np.round((np.clip(apply_voi_lut(hu, flat), low, high) - low) * 255 / (high - low)).astype(np.uint8)
        assert np.array_equal(display_array(ds, frame, path=path), expected)
    assert "WindowCenter" not in ds  # the file's dataset is never changed by a view
