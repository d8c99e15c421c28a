from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.images import write_image

from vlmprobe.datasets import is_multilabel, make_manifest
from vlmprobe.datasets.splits import assign_splits, minimum_class_size
from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.manifest import read_manifest
from vlmprobe.images import load_image


def build(tmp_path: Path, name: str, spec: dict, seed: int = 0):
    out = tmp_path / "manifests" / f"{name}.parquet"
    make_manifest(name, spec, seed, 0.2, 5, out, tmp_path / "data" / name, tmp_path)
    return read_manifest(out)


def test_imagefolder_manifest_columns_and_splits(tmp_path, image_folder):
    table, meta = build(tmp_path, "folder", {"kind": "imagefolder", "root": str(image_folder)})
    assert table.column_names[:7] == ["sample_id", "path", "labels", "split", "fold", "boxes", "annotation_path"]
    rows = table.to_pylist()
    assert len(rows) == 36
    assert len({r["sample_id"] for r in rows}) == 36
    test_counts = Counter(r["labels"][0] for r in rows if r["split"] == "test")
    assert set(test_counts.values()) in ({2, 3}, {2}, {3})  # 20 % of 12 per class, stratified
    assert all((r["fold"] is None) == (r["split"] == "test") for r in rows)
    for name in meta["classes"]:
        folds = {r["fold"] for r in rows if r["split"] == "train" and r["labels"] == [name]}
        assert folds == {0, 1, 2, 3, 4}
    assert meta["multilabel"] is False and meta["seed"] == 0


def test_manifest_is_deterministic_and_seed_dependent(tmp_path, image_folder):
    spec = {"kind": "imagefolder", "root": str(image_folder)}
    first, _ = build(tmp_path / "a", "folder", spec, seed=3)
    second, _ = build(tmp_path / "b", "folder", spec, seed=3)
    other, _ = build(tmp_path / "c", "folder", spec, seed=4)
    assert first.column("split").to_pylist() == second.column("split").to_pylist()
    assert first.column("fold").to_pylist() == second.column("fold").to_pylist()
    assert first.column("fold").to_pylist() != other.column("fold").to_pylist()


def test_multilabel_iterative_stratification_covers_every_label():
    rng = np.random.default_rng(0)
    classes = ["normal", "a", "b", "rare"]
    labels = []
    for _ in range(200):
        row = [c for c, p in zip(classes[1:], [0.4, 0.2, 0.06]) if rng.random() < p]
        labels.append(row or ["normal"])
    split, fold = assign_splits(labels, classes, multilabel=True, seed=0)
    for name in classes:
        rows = [i for i, names in enumerate(labels) if name in names]
        assert any(split[i] == "test" for i in rows)
        assert {fold[i] for i in rows if split[i] == "train"} == {0, 1, 2, 3, 4}
    assert abs(split.count("test") / len(split) - 0.2) < 0.03


def test_csv_kind_multilabel_with_delimiter(tmp_path):
    root = tmp_path / "csvdata"
    lines = ["file,findings"]
    for i in range(40):
        write_image(root / "img" / f"{i}.png", i * 5)
        labels = "normal" if i % 2 else ("effusion|nodule" if i % 4 == 0 else "effusion")
        lines.append(f"img/{i}.png,{labels}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    spec = {"kind": "csv", "path": str(root / "labels.csv"), "path_column": "file", "label_column": "findings", "label_delimiter": "|", "multilabel": True}
    assert is_multilabel("x", spec)
    table, meta = build(tmp_path, "x", spec)
    assert meta["classes"] == ["effusion", "nodule", "normal"]
    labels = dict(zip(table.column("sample_id").to_pylist(), table.column("labels").to_pylist()))
    assert labels["img/0"] == ["effusion", "nodule"]


@pytest.mark.parametrize("bad_path", ["/etc/passwd", "../outside.png"])
def test_csv_refuses_paths_outside_the_root(tmp_path, bad_path):
    root = tmp_path / "csvdata"
    write_image(tmp_path / "outside.png", 10)
    lines = ["path,label"] + [f"{i}.png,{'a' if i % 2 else 'b'}" for i in range(20)] + [f"{bad_path},a"]
    for i in range(20):
        write_image(root / f"{i}.png", i)
    (root / "m.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(VlmprobeError, match="outside the dataset root"):
        build(tmp_path, "x", {"kind": "csv", "path": str(root / "m.csv")})


def test_npz_kind_pools_official_parts(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for part, n in [("train", 30), ("val", 10), ("test", 10)]:
        arrays[f"{part}_images"] = rng.integers(0, 255, size=(n, 28, 28), dtype=np.uint8)
        arrays[f"{part}_labels"] = (np.arange(n) % 2).reshape(n, 1)
    np.savez(tmp_path / "pneumoniamnist.npz", **arrays)
    table, meta = build(tmp_path, "pm", {"kind": "npz", "path": str(tmp_path / "pneumoniamnist.npz"), "label_names": ["normal", "pneumonia"]})
    assert table.num_rows == 50 and meta["classes"] == ["normal", "pneumonia"]
    assert np.asarray(load_image(table.column("path")[0].as_py())).shape == (28, 28, 3)


def test_digits_builtin(tmp_path):
    table, meta = build(tmp_path, "digits", {"kind": "digits"})
    assert table.num_rows == 1797 and len(meta["classes"]) == 10


def test_class_with_too_few_samples_is_a_clear_error(tmp_path, image_folder):
    for i in range(3):
        write_image(image_folder / "rare" / f"r{i}.png", 200 + i)
    with pytest.raises(VlmprobeError, match=r"'rare' \(3\).*fewer than 7 samples") as error:
        build(tmp_path, "folder", {"kind": "imagefolder", "root": str(image_folder)})
    assert "min_class_size" in str(error.value)
    assert not (tmp_path / "manifests" / "folder.parquet").exists()
    table, _ = build(tmp_path, "folder", {"kind": "imagefolder", "root": str(image_folder), "min_class_size": minimum_class_size(5, 0.2)})
    assert "rare" not in {l[0] for l in table.column("labels").to_pylist()}


def test_missing_folder_and_unreadable_image_are_clear_errors(tmp_path, image_folder):
    with pytest.raises(VlmprobeError, match="does not exist"):
        build(tmp_path, "gone", {"kind": "imagefolder", "root": str(tmp_path / "nope")})
    (image_folder / "benign" / "img00.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(VlmprobeError, match=r"unreadable image.*img00\.png"):
        build(tmp_path, "folder", {"kind": "imagefolder", "root": str(image_folder)})
    assert not (tmp_path / "manifests" / "folder.parquet").exists()
    table, _ = build(tmp_path, "folder", {"kind": "imagefolder", "root": str(image_folder), "on_bad_image": "skip"})
    assert table.num_rows == 35


@pytest.mark.parametrize("mode", ["I;16", "P", "RGBA", "LA", "RGB", "L"])
def test_image_modes_convert_to_rgb(tmp_path, mode):
    path = tmp_path / f"img-{mode.replace(';', '')}.png"
    if mode == "I;16":
        values = (np.arange(32 * 32).reshape(32, 32) * 60).astype(np.uint16)
        Image.fromarray(values).save(path)
    else:
        Image.fromarray(np.full((32, 32), 128, np.uint8), mode="L").convert(mode).save(path)
    image = load_image(str(path))
    assert image.mode == "RGB" and image.size == (32, 32)
    pixels = np.asarray(image)
    if mode == "I;16":  # the full 16-bit range maps onto 0..255, not clipped to white
        assert pixels.min() == 0 and pixels.max() == 255
    else:
        assert 100 < pixels.mean() < 160
