"""Bad input from messy hospital folders and internet checkpoints: a clear error every time.

Every case asserts one of two outcomes:

* a :class:`VlmprobeError` whose message names the file, row or config key and says how to fix it,
  raised before any model sees an image, and no output file that a later run would trust; or
* a documented recovery (``on_bad_image: skip``, ``min_class_size``, odd image modes) that is logged.

The workflow-level cases at the end check that the message reaches the user through Snakemake.
"""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from PIL import Image
from support import PIXELS, REPO, TINY_VIT
from support.images import write_image

from vlmprobe import embed as embed_module
from vlmprobe.config_check import check_config, config_problems, load_schema
from vlmprobe.datasets import make_manifest
from vlmprobe.embed import embed_manifest
from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.embeddings import aligned, read_embeddings, write_embeddings
from vlmprobe.formats.manifest import read_manifest
from vlmprobe.images import load_image
from vlmprobe.models import check_spec, load_encoder

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


# ---------------------------------------------------------------------------------------------- helpers


def assert_clear(error: pytest.ExceptionInfo | BaseException, *names: object) -> str:
    """The message names every one of ``names`` and a fix, in a line or two, not a traceback."""
    text = str(error.value if isinstance(error, pytest.ExceptionInfo) else error)
    assert "Fix:" in text or "fix:" in text, text
    for name in names:
        assert str(name) in text, f"{name!r} not named in: {text}"
    assert "Traceback" not in text and len(text) < 2000, text
    return text


def assert_nothing_trusted(path: Path) -> None:
    """No output under the final name, and no temporary file beside it either."""
    assert not path.exists(), f"{path} was written"
    if path.parent.exists():
        leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]
        assert not leftovers, leftovers


def folder_dataset(root: Path, classes: dict[str, int], offset: int = 0) -> Path:
    for index, (name, count) in enumerate(classes.items()):
        for i in range(count):
            write_image(root / name / f"img{i:02d}.png", (offset + 70 * index + 3 * i) % 256)
    return root


def manifest_path(tmp_path: Path, name: str = "ds") -> Path:
    return tmp_path / "results" / "manifests" / f"{name}.parquet"


def build(tmp_path: Path, spec: dict, name: str = "ds") -> Path:
    out = manifest_path(tmp_path, name)
    make_manifest(name, spec, 0, 0.2, 5, out, tmp_path / "results" / "datasets" / name, tmp_path)
    return out


def failing_build(tmp_path: Path, spec: dict, *names: object, name: str = "ds") -> str:
    with pytest.raises(VlmprobeError) as error:
        build(tmp_path, spec, name)
    assert_nothing_trusted(manifest_path(tmp_path, name))
    return assert_clear(error, *names)


def write_csv(root: Path, rows: list[tuple[str, str]], header: str = "path,label", name: str = "labels.csv") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_text("\n".join([header, *(",".join(row) for row in rows)]) + "\n")
    return path


def csv_dataset(root: Path, extra_rows: list[tuple[str, str]] = ()) -> Path:
    """16 good images in two classes, listed in a CSV, plus ``extra_rows``."""
    rows = []
    for i in range(16):
        write_image(root / "img" / f"{i:02d}.png", 10 + 14 * i)
        rows.append((f"img/{i:02d}.png", "a" if i % 2 else "b"))
    return write_csv(root, [*rows, *extra_rows])


@pytest.fixture
def good_folder(tmp_path: Path) -> Path:
    return folder_dataset(tmp_path / "data", {"benign": 8, "malignant": 8})


@pytest.fixture
def model_never_runs(monkeypatch):
    """Fail the test if any image reaches a model: the error must come first."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was run on images before the error was raised")

    monkeypatch.setattr(embed_module, "embed_batches", forbidden)


def png_with_size(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's signature)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


# ---------------------------------------------------------------------------------------------- images


def test_truncated_png_is_named_and_no_manifest_is_written(tmp_path, good_folder):
    bad = good_folder / "benign" / "img03.png"
    write_image(bad, 90, size=(256, 256))
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    text = failing_build(tmp_path, {"kind": "imagefolder", "root": str(good_folder)}, "img03.png", "on_bad_image: skip")
    assert "1 unreadable image" in text


def test_truncated_jpeg_is_refused_not_padded_with_grey(tmp_path, good_folder):
    import timm  # noqa: F401 - importing the model libraries must not switch Pillow to LOAD_TRUNCATED_IMAGES

    bad = good_folder / "malignant" / "scan.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(bad, quality=95)
    bad.write_bytes(bad.read_bytes()[:1500])
    failing_build(tmp_path, {"kind": "imagefolder", "root": str(good_folder)}, "scan.jpg")


def test_zero_byte_image(tmp_path, good_folder):
    (good_folder / "benign" / "empty.png").write_bytes(b"")
    failing_build(tmp_path, {"kind": "imagefolder", "root": str(good_folder)}, "empty.png", "not a readable image")


def test_non_image_file_with_an_image_extension(tmp_path, good_folder):
    (good_folder / "malignant" / "report.png").write_text("Patient: ...\nFindings: none\n")
    failing_build(tmp_path, {"kind": "imagefolder", "root": str(good_folder)}, "report.png")


def test_decompression_bomb_header_is_refused_without_allocating(tmp_path, good_folder):
    png_with_size(good_folder / "benign" / "huge.png", 40_000, 40_000)
    failing_build(tmp_path, {"kind": "imagefolder", "root": str(good_folder)}, "huge.png", "claims more pixels")


def test_on_bad_image_skip_is_a_logged_recovery(tmp_path, good_folder, caplog):
    (good_folder / "benign" / "empty.png").write_bytes(b"")
    (good_folder / "malignant" / "report.png").write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="vlmprobe"):
        out = build(tmp_path, {"kind": "imagefolder", "root": str(good_folder), "on_bad_image": "skip"})
    table, _ = read_manifest(out)
    assert table.num_rows == 16
    assert not any(path.endswith(("empty.png", "report.png")) for path in table.column("path").to_pylist())
    skipped = " ".join(record.getMessage() for record in caplog.records)
    assert "empty.png" in skipped and "report.png" in skipped


def _odd_mode_images(folder: Path) -> dict[str, Path]:
    """Each image mode medical data arrives in, with a known correct RGB conversion."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    gradient16 = (1000 + np.arange(32 * 32).reshape(32, 32) * 2).astype(np.uint16)  # 1000..3046: a 12-bit scan
    paths["16-bit"] = folder / "sixteen.png"
    Image.fromarray(gradient16).save(paths["16-bit"])
    palette = Image.new("P", (32, 32), 0)
    palette.putpalette([200, 30, 40, 10, 220, 90] + [0] * 762)
    palette.paste(1, (0, 0, 16, 32))
    paths["palette"] = folder / "palette.png"
    palette.save(paths["palette"])
    paths["palette+transparency"] = folder / "palette_transparent.png"
    palette.save(paths["palette+transparency"], transparency=1)
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., :3] = (100, 150, 200)
    rgba[:, :16, 3] = 255  # left half opaque, right half fully transparent
    paths["RGBA"] = folder / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(paths["RGBA"])
    paths["LA"] = folder / "la.png"
    Image.fromarray(np.full((32, 32), 120, np.uint8), mode="L").convert("LA").save(paths["LA"])
    paths["1-bit"] = folder / "onebit.png"
    Image.fromarray((np.indices((32, 32))[1] >= 16).astype(np.uint8) * 255, mode="L").convert("1").save(paths["1-bit"])
    paths["float TIFF"] = folder / "float.tif"
    Image.fromarray(np.linspace(-1.5, 2.5, 32 * 32, dtype=np.float32).reshape(32, 32), mode="F").save(paths["float TIFF"])
    paths["CMYK JPEG"] = folder / "cmyk.jpg"
    Image.new("RGB", (32, 32), (40, 160, 220)).convert("CMYK").save(paths["CMYK JPEG"], quality=100)
    return paths


def test_odd_image_modes_are_converted_correctly_not_refused(tmp_path):
    paths = _odd_mode_images(tmp_path / "modes")
    pixels = {name: np.asarray(load_image(str(path))) for name, path in paths.items()}
    assert all(image.shape == (32, 32, 3) and image.dtype == np.uint8 for image in pixels.values())
    sixteen = pixels["16-bit"][..., 0].astype(int)
    assert sixteen.min() == 0 and sixteen.max() == 255  # stretched by its own range, not clipped to white
    assert (np.diff(sixteen.reshape(-1)) >= 0).all()  # monotonic: the ordering of intensities survives
    assert (pixels["palette"][0, 0] == (10, 220, 90)).all() and (pixels["palette"][0, 31] == (200, 30, 40)).all()
    assert (pixels["palette+transparency"][0, 0] == 0).all()  # transparent palette entry -> black background
    assert (pixels["palette+transparency"][0, 31] == (200, 30, 40)).all()
    assert (pixels["RGBA"][0, 0] == (100, 150, 200)).all() and (pixels["RGBA"][0, 31] == 0).all()
    assert (pixels["LA"] == 120).all()
    assert (pixels["1-bit"][:, :16] == 0).all() and (pixels["1-bit"][:, 16:] == 255).all()
    flat = pixels["float TIFF"][..., 0].reshape(-1).astype(int)
    assert flat[0] == 0 and flat[-1] == 255 and (np.diff(flat) >= 0).all()
    assert np.abs(pixels["CMYK JPEG"][16, 16].astype(int) - (40, 160, 220)).max() <= 6


def test_odd_modes_and_wild_sizes_go_through_manifest_and_embedding(tmp_path, good_folder):
    odd = _odd_mode_images(good_folder / "benign")
    for name, (width, height) in {"dot": (1, 1), "strip": (3000, 3), "column": (3, 3000), "big": (1800, 1200)}.items():
        write_image(good_folder / "malignant" / f"{name}.png", 77, size=(width, height))
    manifest = build(tmp_path, {"kind": "imagefolder", "root": str(good_folder)})
    assert read_manifest(manifest)[0].num_rows == 16 + len(odd) + 4
    for model, spec in {"pixels": {"family": "pixels", "image_size": 16, "grayscale": False}, "vit": TINY_VIT}.items():
        out = tmp_path / f"{model}.parquet"
        embed_manifest(manifest, model, spec, out, device="cpu", batch_size=6, num_workers=0)
        _, matrix, _, _ = aligned(manifest, out, spec)
        assert matrix.shape[0] == 16 + len(odd) + 4 and np.isfinite(matrix).all()
    assert matrix.shape[1] == 64


def test_image_broken_after_the_manifest_is_named_by_the_embedding_job(tmp_path, good_folder):
    manifest = build(tmp_path, {"kind": "imagefolder", "root": str(good_folder)})
    (good_folder / "malignant" / "img05.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    for workers in (0, 2):  # a worker process's error arrives as the same one-line message
        out = tmp_path / f"emb{workers}.parquet"
        with pytest.raises(VlmprobeError) as error:
            embed_manifest(manifest, "pixels", PIXELS, out, device="cpu", batch_size=4, num_workers=workers)
        text = assert_clear(error, "img05.png", "not a readable image")
        assert "DataLoader" not in text and "\n" not in text
        assert_nothing_trusted(out)


def test_image_deleted_after_the_manifest(tmp_path, good_folder, model_never_runs):
    manifest = build(tmp_path, {"kind": "imagefolder", "root": str(good_folder)})
    (good_folder / "benign" / "img02.png").unlink()
    out = tmp_path / "emb.parquet"
    with pytest.raises(VlmprobeError) as error:
        embed_manifest(manifest, "pixels", PIXELS, out, device="cpu", batch_size=4, num_workers=0)
    assert_clear(error, "img02.png", "no longer exist")
    assert_nothing_trusted(out)


# ---------------------------------------------------------------------------------------------- dataset structure


def test_missing_dataset_folder(tmp_path):
    failing_build(tmp_path, {"kind": "imagefolder", "root": str(tmp_path / "nowhere")}, "nowhere", "root:")


def test_folder_without_class_subfolders(tmp_path):
    write_image(tmp_path / "flat" / "a.png", 3)
    failing_build(tmp_path, {"kind": "imagefolder", "root": str(tmp_path / "flat")}, "no class sub-folders")


def test_empty_class_folder(tmp_path, good_folder):
    (good_folder / "normal").mkdir()
    failing_build(tmp_path, {"kind": "imagefolder", "root": str(good_folder)}, "normal", "holds no images")


def test_class_folder_of_only_non_image_files(tmp_path, good_folder):
    (good_folder / "normal").mkdir()
    (good_folder / "normal" / "README.txt").write_text("to do")
    failing_build(tmp_path, {"kind": "imagefolder", "root": str(good_folder)}, "normal", "holds no images")


def test_class_with_fewer_samples_than_cv_folds_and_the_min_class_size_recovery(tmp_path, good_folder, caplog):
    folder_dataset(good_folder, {"rare": 4}, offset=200)
    failing_build(tmp_path, {"kind": "imagefolder", "root": str(good_folder)}, "'rare' (4)", "5 CV folds", "min_class_size")
    with caplog.at_level(logging.WARNING, logger="vlmprobe"):
        out = build(tmp_path, {"kind": "imagefolder", "root": str(good_folder), "min_class_size": 7})
    assert read_manifest(out)[1]["classes"] == ["benign", "malignant"]
    assert any("rare" in record.getMessage() for record in caplog.records)


def test_single_class_dataset(tmp_path):
    root = folder_dataset(tmp_path / "data", {"pneumonia": 12})
    failing_build(tmp_path, {"kind": "imagefolder", "root": str(root)}, "single class", "'pneumonia'")


def test_single_class_left_after_label_map(tmp_path, good_folder):
    spec = {"kind": "imagefolder", "root": str(good_folder), "label_map": {"benign": "tumour", "malignant": "tumour"}}
    failing_build(tmp_path, spec, "single class", "'tumour'")


def test_unknown_labels_in_label_map(tmp_path, good_folder):
    folder_dataset(good_folder, {"normal": 8}, offset=150)
    spec = {"kind": "imagefolder", "root": str(good_folder), "label_map": {"benign": "benign", "malignant": "malignant"}}
    failing_build(tmp_path, spec, "['normal']", "label_map")


def test_duplicate_sample_ids_from_two_extensions_of_one_name(tmp_path, good_folder):
    write_image(good_folder / "benign" / "img03.jpg", 40)
    failing_build(tmp_path, {"kind": "imagefolder", "root": str(good_folder)}, "'benign/img03'", "img03.jpg", "img03.png")


def test_duplicate_sample_ids_in_a_csv_id_column(tmp_path):
    root = tmp_path / "csvdata"
    rows = []
    for i in range(16):
        write_image(root / f"{i}.png", 9 * i)
        rows.append((f"{i}.png", "a" if i % 2 else "b", f"P{min(i, 14)}"))  # rows 14 and 15 share patient id P14
    (root / "m.csv").write_text("path,label,pid\n" + "\n".join(",".join(r) for r in rows) + "\n")
    failing_build(tmp_path, {"kind": "csv", "path": str(root / "m.csv"), "id_column": "pid"}, "'P14'", "id column")


@pytest.mark.parametrize(
    "bad_row, names",
    [
        (("img/missing.png", "a"), ["labels.csv line 18", "img/missing.png", "does not exist"]),
        (("/etc/hostname", "a"), ["labels.csv line 18", "/etc/hostname", "outside the dataset root"]),
        (("../outside.png", "a"), ["labels.csv line 18", "../outside.png", "outside the dataset root"]),
        (("img/../../outside.png", "a"), ["labels.csv line 18", "outside the dataset root"]),
        (("link.png", "a"), ["labels.csv line 18", "link.png", "outside the dataset root"]),  # a symlink out of the root
        (("", "a"), ["labels.csv line 18", "empty path"]),
        (("img/00.png", ""), ["labels.csv line 18", "no label"]),
    ],
    ids=["missing-file", "absolute-outside", "dotdot", "dotdot-inside-path", "symlink-out", "empty-path", "empty-label"],
)
def test_bad_csv_rows_name_the_line(tmp_path, bad_row, names):
    root = tmp_path / "csvdata"
    write_image(tmp_path / "outside.png", 5)
    (root / "link.png").parent.mkdir(parents=True, exist_ok=True)
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    csv_path = csv_dataset(root, [bad_row])
    failing_build(tmp_path, {"kind": "csv", "path": str(csv_path)}, *names)


def test_csv_missing_column_lists_the_real_columns(tmp_path):
    csv_path = csv_dataset(tmp_path / "csvdata")
    failing_build(tmp_path, {"kind": "csv", "path": str(csv_path), "label_column": "diagnosis"}, "['diagnosis']", "'label'", "label_column")


def test_csv_that_does_not_exist_and_one_with_only_a_header(tmp_path):
    failing_build(tmp_path, {"kind": "csv", "path": str(tmp_path / "nope.csv")}, "nope.csv", "does not exist")
    header_only = write_csv(tmp_path / "csvdata", [])
    failing_build(tmp_path, {"kind": "csv", "path": str(header_only)}, "labels.csv", "no data rows")


def test_several_labels_in_a_multiclass_dataset(tmp_path):
    csv_path = csv_dataset(tmp_path / "csvdata")
    csv_path.write_text(csv_path.read_text().replace("img/05.png,a\n", "img/05.png,a|b\n"))  # one row with two labels
    failing_build(tmp_path, {"kind": "csv", "path": str(csv_path), "label_delimiter": "|"}, "img/05 (2)", "multilabel: true")


def test_npz_with_mismatched_label_rows(tmp_path):
    path = tmp_path / "broken.npz"
    np.savez(path, train_images=np.zeros((20, 8, 8), np.uint8), train_labels=np.zeros((19, 1), np.int64))
    failing_build(tmp_path, {"kind": "npz", "path": str(path)}, "train_labels has 19 rows", "train_images has 20")


# ---------------------------------------------------------------------------------------------- models and checkpoints


def _tiny_checkpoint(tmp_path: Path, family: str, suffix: str = ".pt") -> tuple[Path, dict]:
    """A real checkpoint of a tiny model of ``family`` and the spec that loads it."""
    if family == "open_clip":
        model = load_encoder("m", TINY_VIT).extras["open_clip_model"]
        spec = {"family": "open_clip", "name": "vlmprobe-vit-tiny", "preprocess": {"mean": [0.5] * 3, "std": [0.25] * 3}}
    elif family == "timm":
        import timm

        model = timm.create_model("resnet18", pretrained=False, num_classes=0)
        spec = {"family": "timm", "name": "resnet18", "image_size": 32}
    else:
        import torchvision

        model = torchvision.models.resnet18()
        spec = {"family": "torchvision", "name": "resnet18", "image_size": 32}
    path = tmp_path / f"{family}{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    else:
        torch.save(model.state_dict(), path)
    return path, {**spec, "pretrained": str(path)}


FAMILIES = ["open_clip", "timm", "torchvision"]


@pytest.mark.parametrize(
    "spec, names",
    [
        ({"family": "open_clip", "name": "ViT-B-61", "pretrained": None}, ["ViT-B-61", "ViT-B-16"]),
        ({"family": "timm", "name": "resnet181", "pretrained": False}, ["resnet181", "timm.list_models"]),
        ({"family": "torchvision", "name": "vgg61", "pretrained": None}, ["vgg61", "list_models"]),
        ({"family": "open_clip", "name": "ViT-B-16", "pretrained": "openia"}, ["openia", "openai"]),
        ({"family": "tensorflow", "name": "x"}, ["unknown family 'tensorflow'", "pixels"]),
    ],
    ids=["open_clip-name", "timm-name", "torchvision-name", "pretrained-tag", "family"],
)
def test_unknown_model_is_refused_before_any_data_is_read(tmp_path, spec, names, model_never_runs):
    out = tmp_path / "emb.parquet"
    with pytest.raises(VlmprobeError) as error:
        embed_manifest(tmp_path / "no-manifest-needed.parquet", "bad-model", spec, out, device="cpu")
    assert_clear(error, "'bad-model'", *names)
    assert_nothing_trusted(out)


@pytest.mark.parametrize("family", FAMILIES)
def test_missing_checkpoint_file(tmp_path, family):
    _, spec = _tiny_checkpoint(tmp_path, family)
    spec["pretrained"] = str(tmp_path / "weights" / "not-there.pt")
    with pytest.raises(VlmprobeError) as error:
        check_spec("m", spec)
    assert_clear(error, "not-there.pt", "does not exist")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("damage", ["truncated", "zero-bytes", "random-bytes"])
def test_corrupt_checkpoint_fails_the_offline_check(tmp_path, family, damage, monkeypatch):
    path, spec = _tiny_checkpoint(tmp_path, family)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "zero-bytes": b"", "random-bytes": b"\x00" + np.random.default_rng(0).bytes(4095)}[damage])
    # the check alone finds it: no model is built (on a cluster, the check runs on the submitting node)
    from vlmprobe.models import load_families
    from vlmprobe.models.base import FAMILIES as REGISTRY

    load_families()
    monkeypatch.setattr(type(REGISTRY[family]), "load", lambda *a, **k: pytest.fail("model built before the check"))
    with pytest.raises(VlmprobeError) as error:
        check_spec("m", spec)
    assert_clear(error, path.name, "not a readable weights file", "re-download")


def test_corrupt_safetensors_checkpoint(tmp_path):
    path, spec = _tiny_checkpoint(tmp_path, "timm", suffix=".safetensors")
    check_spec("m", spec)  # the intact file passes, reading only its header
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(VlmprobeError) as error:
        check_spec("m", spec)
    assert_clear(error, "timm.safetensors", "not a readable weights file")


def test_checkpoint_holding_no_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(3)], path)
    with pytest.raises(VlmprobeError) as error:
        check_spec("m", {"family": "timm", "name": "resnet18", "pretrained": str(path)})
    assert_clear(error, "list.pt", "no state dict", "state_dict()")


@pytest.mark.parametrize(
    "family, other",
    [
        ("open_clip", {"family": "open_clip", "name": "vlmprobe-rn-tiny"}),
        ("timm", {"family": "timm", "name": "resnet34"}),
        ("torchvision", {"family": "torchvision", "name": "vgg11"}),
    ],
)
def test_checkpoint_of_another_architecture(tmp_path, family, other, model_never_runs, good_folder):
    path, spec = _tiny_checkpoint(tmp_path, family)
    spec = {**spec, **other}
    manifest = build(tmp_path, {"kind": "imagefolder", "root": str(good_folder)})
    out = tmp_path / "emb.parquet"
    with pytest.raises(VlmprobeError) as error:
        embed_manifest(manifest, "m", spec, out, device="cpu", num_workers=0)
    assert_clear(error, path.name, f"does not fit architecture '{other['name']}'", "set the model's `name`")
    assert_nothing_trusted(out)


# ---------------------------------------------------------------------------------------------- embedding tables


def _planted_table(path: Path, matrix: np.ndarray, spec: dict) -> Path:
    """An embedding table written around the writer's checks (a table from another tool, or a bit flip)."""
    write_embeddings(path, [f"s{i}" for i in range(len(matrix))], np.zeros_like(matrix), {"spec": spec})
    table = pq.read_table(path)
    values = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), matrix.shape[1])
    pq.write_table(table.set_column(1, table.schema.field(1), values), path)
    return path


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_an_embedding_table(tmp_path, value):
    matrix = np.ones((4, 3), np.float32)
    matrix[2, 1] = value
    path = _planted_table(tmp_path / "e.parquet", matrix, PIXELS)
    with pytest.raises(VlmprobeError) as error:
        read_embeddings(path, PIXELS)
    assert_clear(error, "e.parquet", "NaN or Inf", "1 row(s)", "precision: fp32")
    # ... and the writer never produces one
    with pytest.raises(VlmprobeError):
        write_embeddings(tmp_path / "new.parquet", ["a", "b", "c", "d"], matrix, {"spec": PIXELS})
    assert_nothing_trusted(tmp_path / "new.parquet")


def test_embedding_table_whose_model_spec_no_longer_matches_the_config(tmp_path):
    path = tmp_path / "e.parquet"
    write_embeddings(path, ["a", "b"], np.ones((2, 4), np.float32), {"spec": {"family": "pixels", "image_size": 16}})
    with pytest.raises(VlmprobeError) as error:
        read_embeddings(path, {"family": "pixels", "image_size": 32})
    assert_clear(error, "e.parquet", "'image_size': 16", "'image_size': 32", "re-run snakemake")


def test_foreign_or_old_format_embedding_table(tmp_path):
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table({"sample_id": ["a"], "embedding": [[1.0, 2.0]]}), path)
    with pytest.raises(VlmprobeError) as error:
        read_embeddings(path)
    assert_clear(error, "e.parquet", "format version None")


def test_truncated_embedding_table(tmp_path):
    path = tmp_path / "e.parquet"
    write_embeddings(path, ["a", "b"], np.ones((2, 4), np.float32), {"spec": PIXELS})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(VlmprobeError) as error:
        read_embeddings(path, PIXELS)
    assert_clear(error, "e.parquet", "unreadable", "delete it")


def test_embedding_table_of_another_dataset_version(tmp_path, good_folder):
    manifest = build(tmp_path, {"kind": "imagefolder", "root": str(good_folder)})
    out = tmp_path / "e.parquet"
    embed_manifest(manifest, "pixels", PIXELS, out, device="cpu", num_workers=0)
    write_image(good_folder / "benign" / "img99.png", 33)  # the dataset grew; the manifest is rebuilt
    build(tmp_path, {"kind": "imagefolder", "root": str(good_folder)})
    with pytest.raises(VlmprobeError) as error:
        aligned(manifest, out, PIXELS)
    assert_clear(error, "e.parquet", "does not match manifest", "1 manifest samples missing")


# ---------------------------------------------------------------------------------------------- configuration


def _config(**changes) -> dict:
    config = {
        "datasets": {"alpha": {"kind": "imagefolder", "root": "data/alpha"}},
        "models": {"pixels": {"family": "pixels", "image_size": 16}},
        "embedding": {"batch_size": 16},
    }
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
    return config


def test_the_shipped_config_and_a_minimal_one_are_valid():
    schema = load_schema(SCHEMA)
    assert config_problems(yaml.safe_load((REPO / "config.yaml").read_text()), schema) == []
    assert config_problems(_config(), schema) == []


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"embedding__batch_size": "sixty-four"}, "`embedding.batch_size`: 'sixty-four' is text, but it must be a whole number; fix: write a whole number without quotes"),
        ({"embedding__batch_size": -1}, "`embedding.batch_size`: -1 is less than the minimum of 1; fix: use a value of at least 1"),
        ({"models": {}}, "`models` is empty; fix: list at least 1 entry under `models`"),
        ({"models": []}, "`models`: [] is a list, but it must be a mapping"),
        ({"umap": {"n_neighbors": [15, 1]}}, "`umap.n_neighbors[1]`: 1 is less than the minimum of 2"),
        ({"umap": {"min_dist": [0.1, 1.5]}}, "`umap.min_dist[1]`: 1.5 is greater than the maximum of 1; fix: use a value of at most 1"),
        ({"umap": {"n_neighbors": []}}, "`umap.n_neighbors` is an empty list"),
        ({"split": {"test_fraction": 1.2}}, "`split.test_fraction`: 1.2 is greater than or equal to the maximum of 1; fix: use a value below 1"),
        ({"embedding__batchsize": 8}, "`embedding.batchsize`: unknown key (did you mean `batch_size`?)"),
        ({"models__vit": {"family": "open_clip"}}, "`models.vit.name` is missing; fix: add `name:` under `models.vit`"),
        ({"datasets__alpha__kind": "image-folder"}, "`datasets.alpha.kind`: 'image-folder' is not allowed (did you mean `imagefolder`?)"),
        ({"datasets": KeyError}, "`datasets` is missing; fix: add `datasets:` at the top level"),
        ({"embedding__device": "gpu"}, "`embedding.device`: 'gpu' does not match"),
        ({"seed": 1.5}, "`seed`: 1.5 is a number, but it must be a whole number"),
        ({"datasets__my data": {"kind": "digits"}}, "`datasets`: the name 'my data' is not allowed"),
    ],
    ids=["wrong-type", "negative-batch", "empty-models", "models-as-list", "grid-too-small", "grid-too-large", "empty-grid",
         "test-fraction", "typo", "model-without-name", "unknown-kind", "no-datasets", "device", "float-seed", "dataset-name"],
)
def test_config_problem_names_the_key_and_the_fix(changes, expected):
    with pytest.raises(VlmprobeError) as error:
        check_config(_config(**changes), SCHEMA)
    text = str(error.value)
    assert f"config key {expected}" in text, text
    assert "fix:" in text and "schema[" not in text


def test_every_config_problem_is_reported_at_once():
    config = _config(embedding__batch_size=0, models={}, umap={"min_dist": [2]})
    problems = config_problems(config, load_schema(SCHEMA))
    assert len(problems) == 3 and all(line.startswith("config key `") for line in problems)


# ---------------------------------------------------------------------------------------------- through Snakemake


@pytest.mark.workflow
def test_config_errors_reach_the_user_from_a_dry_run(tmp_path):
    from support.workflow import snakemake, write_config

    write_config(tmp_path, base=_config(embedding__batch_size=-4, models={}, umap={"n_neighbors": [1]}, split={"n_folds": "five"}))
    result = snakemake(tmp_path, "--dry-run", check=False)
    text = result.stdout + result.stderr
    assert result.returncode != 0
    for key in ("`embedding.batch_size`: -4", "`models` is empty", "`umap.n_neighbors[0]`: 1", "`split.n_folds`: 'five'"):
        assert key in text, text[-3000:]
    assert "4 problem(s)" in text and "nothing was run" in text
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_a_bad_image_fails_its_job_with_one_log_line_and_no_output(tmp_path):
    from support.workflow import snakemake, write_config

    folder = folder_dataset(tmp_path / "data" / "alpha", {"a": 8, "b": 8})
    (folder / "b" / "img04.png").write_bytes(b"")
    write_config(tmp_path, {"alpha": {"kind": "imagefolder", "root": "data/alpha"}}, {"pixels": PIXELS}, umap={"enabled": False})
    result = snakemake(tmp_path, "results/manifests/alpha.parquet", check=False)
    assert result.returncode != 0
    log = (tmp_path / "logs" / "manifest" / "alpha.log").read_text()
    assert "img04.png" in log and "Fix:" in log and "Traceback" not in log
    assert_nothing_trusted(tmp_path / "results" / "manifests" / "alpha.parquet")
