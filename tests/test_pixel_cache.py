"""The pixel cache: every family's preprocessing split exactly (embeddings from the cache equal those decoding
afresh, bit for bit, on CPU), a gray dataset kept as one channel, a killed fill resuming, a changed file or
geometry never trusted, and one cache job per (dataset, geometry) in the plan."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support import PIXELS, REPO, TINY_RN, TINY_VIT
from support.plans import plan_of, validated, wildcards

from vlmprobe.datasets import make_manifest
from vlmprobe.embed import embed_manifest
from vlmprobe.formats.embeddings import read_embeddings
from vlmprobe.images import load_image
from vlmprobe.models import load_encoder
from vlmprobe.models import pixel_cache as cache_module
from vlmprobe.models.base import FAMILIES, ModelFamily, family_of, register_family
from vlmprobe.models.families.pixels import PixelsFamily
from vlmprobe.models.pixel_cache import fill_cache, open_cache
from vlmprobe.models.pixel_split import NotSplittable, PixelSplit, planned_split, split_preprocess, to_model
from vlmprobe.plan import Plan

TIMM_RESNET = {"family": "timm", "name": "resnet18", "pretrained": False, "image_size": 40}
TIMM_VIT = {"family": "timm", "name": "vit_tiny_patch16_224", "pretrained": False, "image_size": 32, "kwargs": {"dynamic_img_size": True}}
TORCHVISION = {"family": "torchvision", "name": "resnet18", "pretrained": None, "image_size": 40}
PIXELS_RGB = {"family": "pixels", "image_size": 12, "grayscale": False}


def write_images(root: Path, colour: bool) -> Path:
    """Images of awkward sizes (odd, non-square, smaller than the crop) and, with ``colour``, modes that are not gray."""
    rng = np.random.default_rng(7)
    sizes = [(37, 53), (64, 48), (20, 20), (81, 33), (50, 50), (33, 70)]
    for index, (width, height) in enumerate(sizes * 2):
        folder = root / ("a" if index % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        gray = rng.integers(0, 256, size=(height, width), dtype=np.uint8)
        if index == 3:
            Image.fromarray(gray.astype(np.uint16) * 200).save(folder / f"{index:02d}.png")
        elif colour and index % 3 == 0:
            Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8), mode="RGB").save(folder / f"{index:02d}.png")
        elif colour and index % 3 == 1:
            Image.fromarray(rng.integers(0, 256, size=(height, width, 4), dtype=np.uint8), mode="RGBA").save(folder / f"{index:02d}.png")
        else:
            Image.fromarray(gray, mode="L").save(folder / f"{index:02d}.png")
    return root


@pytest.fixture(scope="module", params=["gray", "colour"])
def dataset(request, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp(f"pixels-{request.param}")
    root = write_images(tmp / "images", colour=request.param == "colour")
    manifest = tmp / "manifest.parquet"
    make_manifest("d", {"kind": "imagefolder", "root": str(root)}, 0, 0.2, 2, manifest, tmp / "work", tmp)
    return manifest


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory) -> Path:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    folder = tmp_path_factory.mktemp("tiny-clip")
    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=1, patch_size=8, image_size=32)
    CLIPVisionModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def cxr_clip_release(tmp_path_factory) -> Path:
    """A CXR-CLIP ResNet-50 release in the authors' container and keys (``model``: ``image_encoder.resnet.*``, the projection)."""
    import torchvision

    torch.manual_seed(0)
    resnet = torchvision.models.resnet50(weights=None)
    del resnet.fc
    state = {f"image_encoder.resnet.{k}": v for k, v in resnet.state_dict().items()}
    state.update({"image_projection.projection.weight": torch.randn(512, 2048), "image_projection.projection.bias": torch.zeros(512)})
    path = tmp_path_factory.mktemp("cxr-clip") / "r50_mcc.tar"
    torch.save({"model": state, "epoch": 1}, path)
    return path


def family_specs(tiny_clip_dir: Path, cxr_clip_release: Path) -> dict[str, dict]:
    return {
        "cxr_clip": {"family": "cxr_clip", "name": "resnet50", "pretrained": str(cxr_clip_release), "image_size": 32},
        "pixels": PIXELS,
        "pixels-rgb": PIXELS_RGB,
        "open_clip-vit": TINY_VIT,
        "open_clip-rn": TINY_RN,
        "timm-resnet": TIMM_RESNET,
        "timm-vit": TIMM_VIT,
        "torchvision": TORCHVISION,
        "transformers_clip": {"family": "transformers_clip", "name": f"local-dir:{tiny_clip_dir}"},
    }


FAMILY_CASES = [pytest.param("cxr_clip", marks=pytest.mark.slow), "pixels", "pixels-rgb", "open_clip-vit", "open_clip-rn", "timm-resnet", "timm-vit", "torchvision", "transformers_clip"]


def manifest_paths(manifest: Path) -> tuple[list[str], list[str]]:
    from vlmprobe.formats.manifest import read_manifest

    table, _ = read_manifest(manifest)
    return table.column("sample_id").to_pylist(), table.column("path").to_pylist()


@pytest.mark.parametrize("case", FAMILY_CASES)
def test_embeddings_from_the_cache_equal_decoding_afresh(case, dataset, tiny_clip_dir, cxr_clip_release, tmp_path):
    spec = family_specs(tiny_clip_dir, cxr_clip_release)[case]
    planned, reason = planned_split("m", spec)
    assert planned is not None, reason
    encoder = load_encoder("m", spec)
    # what the plan knew before loading is what the loaded model does
    assert split_preprocess(encoder.preprocess).key == planned.key
    pixels, index = tmp_path / "cache.npy", tmp_path / "cache.parquet"
    fill_cache(dataset, PixelSplit.from_geometry_params(planned.geometry_params()), pixels, index, workers=0, chunk_images=5, progress=False)
    sample_ids, paths = manifest_paths(dataset)
    cache = open_cache(pixels, index, planned, sample_ids, paths)
    assert not isinstance(cache, str), cache

    # the model's input tensors themselves, then the embedding tables
    fresh = torch.stack([encoder.preprocess(load_image(p)) for p in paths]).contiguous(memory_format=torch.channels_last)
    from_cache = to_model(torch.from_numpy(np.array(cache.pixels)), split_preprocess(encoder.preprocess), "cpu")
    assert torch.equal(from_cache, fresh)
    decoded, cached = tmp_path / "decoded.parquet", tmp_path / "cached.parquet"
    embed_manifest(dataset, "m", spec, decoded, device="cpu", batch_size=4, num_workers=0)
    embed_manifest(dataset, "m", spec, cached, device="cpu", batch_size=4, num_workers=0, pixel_cache=(str(pixels), str(index)))
    a, b = read_embeddings(decoded), read_embeddings(cached)
    assert torch.equal(torch.from_numpy(a.matrix.copy()), torch.from_numpy(b.matrix.copy()))
    assert b.metadata["pixels"]["source"] == "cache" and b.metadata["pixels"]["geometry"]["key"] == planned.key
    assert a.metadata["pixels"] == {"source": "decoded", "note": "no pixel cache was given to this job"}


def llava_folder(root: Path, pad: bool) -> Path:
    """A LLaVA repository folder's config.json beside a staged CLIP tower (its processor config): all the
    preprocessing reads; the weights are not needed to build it (LLaVA's own shards are tested in test_llava.py)."""
    import json

    tower = root / "clip"
    tower.mkdir(parents=True, exist_ok=True)
    (tower / "config.json").write_text(json.dumps({"model_type": "clip_vision_model", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                                   "num_attention_heads": 2, "image_size": 32, "patch_size": 8}))
    (tower / "preprocessor_config.json").write_text(json.dumps({"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32},
                                                                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                                                                "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3}))
    folder = root / ("llava-pad" if pad else "llava")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llava_mistral", "mm_vision_tower": f"local-dir:{tower}", "mm_projector_type": "mlp2x_gelu",
                                                    "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
                                                    "image_aspect_ratio": "pad" if pad else "square", "hidden_size": 24}))
    return folder


@pytest.mark.parametrize("case", ["conch", "llava", "llava-pad"])
def test_model_inputs_from_the_cache_equal_decoding_afresh(case, dataset, tmp_path):
    """Families whose releases need the authors' files to load: the transform their ``load`` uses (the same
    function), split and refilled from the cache, gives the very same model input tensors."""
    specs = {
        "conch": {"family": "conch", "name": "conch_ViT-B-16", "pretrained": "unused.bin", "kwargs": {"image_size": 32}},
        "llava": {"family": "llava", "name": "microsoft/llava-med-v1.5-mistral-7b", "pretrained": str(llava_folder(tmp_path, pad=False))},
        "llava-pad": {"family": "llava", "name": "microsoft/llava-med-v1.5-mistral-7b", "pretrained": str(llava_folder(tmp_path, pad=True))},
    }
    spec = specs[case]
    planned, reason = planned_split("m", spec)
    assert planned is not None, reason
    transform = family_of("m", spec).preprocess_without_weights("m", spec)
    pixels, index = tmp_path / "cache.npy", tmp_path / "cache.parquet"
    fill_cache(dataset, PixelSplit.from_geometry_params(planned.geometry_params()), pixels, index, workers=0, progress=False)
    sample_ids, paths = manifest_paths(dataset)
    cache = open_cache(pixels, index, planned, sample_ids, paths)
    assert not isinstance(cache, str), cache
    if case == "llava-pad":  # LLaVA pads with the mean colour: a gray image does not stay gray, so three channels are kept
        assert not planned.channel_symmetric and cache.pixels.shape[-1] == 3
    fresh = torch.stack([transform(load_image(p)) for p in paths]).contiguous(memory_format=torch.channels_last)
    assert torch.equal(to_model(torch.from_numpy(np.array(cache.pixels)), planned, "cpu"), fresh)


def test_dicom_images_through_the_cache_equal_decoding_afresh(tmp_path):
    """Real DICOM files (pydicom's test data: CT and MR, MONOCHROME2, 16-bit) named by frame references, as the
    dicom dataset kind writes them: kept as one channel, and the model inputs are the ones decoding afresh gives."""
    from pydicom.data import get_testdata_file

    from vlmprobe.datasets.manifest import build_manifest, write_manifest
    from vlmprobe.datasets.records import Record
    from vlmprobe.dicom import dicom_reference

    files = [get_testdata_file("CT_small.dcm"), get_testdata_file("MR_small.dcm")]
    records = [Record(sample_id=f"s{i}", path=dicom_reference(files[i % 2], voi=("first", "none")[i % 3 == 0]), labels=(("ct", "mr")[i % 2],)) for i in range(12)]
    manifest = tmp_path / "dicom.parquet"
    write_manifest(manifest, build_manifest("dicom", {"kind": "dicom"}, records, False, seed=0, test_fraction=0.2, n_folds=2))
    split, _ = planned_split("vit", TINY_VIT)
    cache = (tmp_path / "c.npy", tmp_path / "c.parquet")
    fill_cache(manifest, split, *cache, workers=0, progress=False)
    sample_ids, paths = manifest_paths(manifest)
    opened = open_cache(*cache, split, sample_ids, paths)
    assert not isinstance(opened, str), opened
    assert opened.pixels.shape == (12, 64, 64, 1) and opened.meta["versions"]["vlmprobe.images"]
    transform = family_of("vit", TINY_VIT).preprocess_without_weights("vit", TINY_VIT)
    fresh = torch.stack([transform(load_image(p)) for p in paths]).contiguous(memory_format=torch.channels_last)
    assert torch.equal(to_model(torch.from_numpy(np.array(opened.pixels)), split, "cpu"), fresh)


def test_a_gray_dataset_is_kept_as_one_channel(tmp_path):
    root = write_images(tmp_path / "gray", colour=False)
    manifest = tmp_path / "m.parquet"
    make_manifest("d", {"kind": "imagefolder", "root": str(root)}, 0, 0.2, 2, manifest, tmp_path / "w", tmp_path)
    colour_root = write_images(tmp_path / "colour", colour=True)
    colour_manifest = tmp_path / "c.parquet"
    make_manifest("d", {"kind": "imagefolder", "root": str(colour_root)}, 0, 0.2, 2, colour_manifest, tmp_path / "w2", tmp_path)
    split, _ = planned_split("vit", TINY_VIT)
    fill_cache(manifest, split, tmp_path / "g.npy", tmp_path / "g.parquet", workers=0, progress=False)
    fill_cache(colour_manifest, split, tmp_path / "c.npy", tmp_path / "c.parquet", workers=0, progress=False)
    assert np.load(tmp_path / "g.npy").shape == (12, 64, 64, 1)
    assert np.load(tmp_path / "c.npy").shape == (12, 64, 64, 3)


def test_a_killed_fill_resumes_and_ends_identical(dataset, tmp_path, monkeypatch, caplog):
    split, _ = planned_split("vit", TINY_VIT)
    reference = tmp_path / "ref.npy"
    fill_cache(dataset, split, reference, tmp_path / "ref.parquet", workers=0, chunk_images=4, progress=False)
    real = cache_module._DecodedPixels.__getitem__

    def dies_at_row_6(self, index):
        if index == 6:
            raise KeyboardInterrupt("killed")
        return real(self, index)

    monkeypatch.setattr(cache_module._DecodedPixels, "__getitem__", dies_at_row_6)
    out = tmp_path / "cache.npy"
    with pytest.raises(KeyboardInterrupt):
        fill_cache(dataset, split, out, tmp_path / "cache.parquet", workers=0, chunk_images=4, progress=False)
    assert not out.exists() and Path(f"{out}.partial").exists()
    monkeypatch.setattr(cache_module._DecodedPixels, "__getitem__", real)
    with caplog.at_level(logging.INFO, logger="vlmprobe"):
        fill_cache(dataset, split, out, tmp_path / "cache.parquet", workers=0, chunk_images=4, progress=False)
    assert "resuming the pixel cache: 4 of 12 images" in caplog.text
    assert np.array_equal(np.load(out), np.load(reference))
    assert not Path(f"{out}.partial").exists() and not Path(f"{out}.partial.json").exists()


def test_a_changed_file_or_geometry_is_never_trusted(tmp_path, caplog):
    root = write_images(tmp_path / "images", colour=True)
    manifest = tmp_path / "m.parquet"
    make_manifest("d", {"kind": "imagefolder", "root": str(root)}, 0, 0.2, 2, manifest, tmp_path / "w", tmp_path)
    split, _ = planned_split("vit", TINY_VIT)
    pixels, index = tmp_path / "c.npy", tmp_path / "c.parquet"
    fill_cache(manifest, split, pixels, index, workers=0, progress=False)
    sample_ids, paths = manifest_paths(manifest)
    assert not isinstance(open_cache(pixels, index, split, sample_ids, paths), str)
    # another geometry: refused
    other, _ = planned_split("rn", {**TINY_VIT, "image_size": 48})
    assert "is not the model's" in open_cache(pixels, index, other, sample_ids, paths)
    # an image rewritten with other pixels (same size on disk or not): refused, and the embedding decodes afresh
    Image.fromarray(np.full((30, 30), 9, np.uint8), mode="L").save(paths[0])
    assert "changed since the pixel cache was filled" in open_cache(pixels, index, split, sample_ids, paths)
    out = tmp_path / "e.parquet"
    embed_manifest(manifest, "m", TINY_VIT, out, device="cpu", batch_size=4, num_workers=0, pixel_cache=(str(pixels), str(index)))
    note = read_embeddings(out).metadata["pixels"]
    assert note["source"] == "decoded" and "changed since the pixel cache was filled" in note["note"]
    # refilling under the new key starts over, and the cache is trusted again
    fill_cache(manifest, split, pixels, index, workers=0, progress=False)
    assert not isinstance(open_cache(pixels, index, split, sample_ids, paths), str)
    # touched but identical content: still trusted (the hash decides, not the time stamp)
    Path(paths[1]).touch()
    assert not isinstance(open_cache(pixels, index, split, sample_ids, paths), str)


def test_a_preprocessing_that_cannot_be_split_falls_back_with_a_note(dataset, tmp_path):
    from torchvision import transforms

    with pytest.raises(NotSplittable, match="RandomCrop"):
        split_preprocess(transforms.Compose([transforms.RandomCrop(8), transforms.ToTensor()]))
    with pytest.raises(NotSplittable, match="varies with the image"):
        split_preprocess(transforms.Compose([transforms.Resize(8), transforms.ToTensor()]))
    with pytest.raises(NotSplittable, match="after ToTensor"):
        split_preprocess(transforms.Compose([transforms.Resize((8, 8)), transforms.ToTensor(), transforms.Normalize([0.5], [0.5]), transforms.RandomErasing()]))

    assert ModelFamily().preprocess_without_weights("m", {}) is None  # the default: no cache, decode afresh

    class Unsplit(PixelsFamily):
        name = "pixels_unsplit"

        def preprocess_without_weights(self, model_id, spec):
            return None

    register_family(Unsplit)
    try:
        spec = {**PIXELS, "family": "pixels_unsplit"}
        split, reason = planned_split("p", spec)
        assert split is None and "'pixels_unsplit' declares no preprocessing before the model loads" in reason
        out = tmp_path / "e.parquet"
        embed_manifest(dataset, "p", spec, out, device="cpu", batch_size=4, num_workers=0)
        assert "declares no preprocessing" in read_embeddings(out).metadata["pixels"]["note"]
    finally:
        FAMILIES.pop("pixels_unsplit")


def test_two_models_with_one_geometry_plan_one_cache_job():
    cxr = {"kind": "synthetic-cxr", "n_images": 600, "image_size": 64}
    models = {
        "vit-a": TINY_VIT,
        "vit-b": {**TINY_VIT, "preprocess": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}, "pretrained": None},
        "pixels": PIXELS,
        "resnet": TIMM_RESNET,
    }
    plan = plan_of({"cxr": cxr, "other": cxr}, models)
    caches = plan.pixel_caches
    assert caches.splits["vit-a"].name == caches.splits["vit-b"].name  # mean/std differ, geometry does not
    assert len(caches.geometries) == 3 and len(caches.jobs()) == 6
    inputs = caches.embed_pixels(wildcards(dataset="cxr", model="vit-b")), caches.embed_pixel_index(wildcards(dataset="cxr", model="vit-b"))
    assert inputs == (caches.embed_pixels(wildcards(dataset="cxr", model="vit-a")), caches.embed_pixel_index(wildcards(dataset="cxr", model="vit-a")))
    name = caches.splits["vit-a"].name
    assert inputs == (f"results/pixels/cxr/{name}.npy", f"results/pixels/cxr/{name}.parquet")
    assert caches.geometry(wildcards(geometry=caches.splits["vit-a"].name))["size"] == [64, 64]
    off = plan_of({"cxr": cxr}, models, embedding={"pixel_cache": False}).pixel_caches
    assert off.jobs() == [] and off.embed_pixels(wildcards(dataset="cxr", model="vit-a")) == []
    assert off.reasons["vit-a"] == "`embedding: pixel_cache: false`"


@pytest.mark.parametrize("preset", ["config.yaml", "config/studies/takeda2025.yaml", "config/studies/sadman2025.yaml"])
def test_the_default_run_and_presets_plan_one_cache_per_dataset_and_geometry(preset):
    import yaml

    plan = Plan(validated(yaml.safe_load((REPO / preset).read_text())))
    caches = plan.pixel_caches
    # every model of the shipped configs reads a cache but FLAIR, whose resize runs on floats (the authors' order),
    # and LLaVA folders not downloaded here (their config.json says how they preprocess)
    expected = {"flair": "after ToTensor", "llava": "is not a downloaded LLaVA repository folder"}
    for model, reason in caches.reasons.items():
        family = plan.config["models"][model]["family"]
        assert family in expected and expected[family] in reason, (model, reason)
    assert len(caches.jobs()) == len(plan.datasets) * len(caches.geometries) < len(plan.datasets) * len(plan.models) + 1
    if preset.endswith("takeda2025.yaml"):
        # the 224-px open_clip models share one geometry, the 336-px CLIP towers (open_clip and transformers) another,
        # UNI and CXR-CLIP (224, bilinear, no margin) a third, torchvision's VGG16 and ResNet50 a fourth
        shared = [
            ["biomedclip", "clip-vit-b16", "clip-vit-h14", "clip-vit-bigg14"],
            ["eva02-l14-336", "llava-clip-l14-336", "llm2clip-l14-336"],
            ["uni", "cxr-clip"],
            ["vgg16", "resnet50"],
        ]
        for models in shared:
            assert caches.models_of(caches.splits[models[0]].name) == [m for m in plan.models if m in models]
        assert len(caches.geometries) + len(caches.reasons) <= len(plan.models) - 7
