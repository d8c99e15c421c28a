"""Attribution maps: target layers and token reshapes, geometry, shapes and ranges, the three settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from vlmprobe.datasets.manifest import BOX_TYPE, METADATA_KEY
from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.maps import read_maps
from vlmprobe.heatmaps.geometry import input_geometry, map_at_image_size, resize_map, to_input
from vlmprobe.heatmaps.maps import choose_targets, compute_maps, method_class, select_images, target_layer
from vlmprobe.heatmaps.scorers import HeadScorer, ZeroShotScorer
from vlmprobe.heatmaps.stage import run_heatmaps
from vlmprobe.models import load_encoder
from vlmprobe.models.cam_layers import GuessedReshape, TokenGrid

TINY_VIT = {"family": "open_clip", "name": "vlmprobe-vit-tiny", "pretrained": None}
TINY_RN = {"family": "open_clip", "name": "vlmprobe-rn-tiny", "pretrained": None}
CLASSES = ["effusion", "nodule", "normal"]


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return load_encoder("vit-tiny", TINY_VIT)


def _image(height=40, width=56, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((height, width)) * 255).astype(np.uint8)).convert("RGB")


# ----------------------------------------------------------------------------------------------------
# reshapes and target layers
# ----------------------------------------------------------------------------------------------------


def test_token_grid_drops_prefix_tokens_and_keeps_patch_order():
    batch, grid, channels = 2, (3, 4), 5
    patches = torch.arange(batch * 12 * channels, dtype=torch.float32).reshape(batch, 12, channels)
    tokens = torch.cat([torch.full((batch, 2, channels), -1.0), patches], dim=1)  # 2 prefix tokens
    out = TokenGrid(2, grid)(tokens)
    assert out.shape == (batch, channels, 3, 4)
    # patch k sits at row k // 4, column k % 4 (row-major, as conv1/patch_embed flatten them)
    assert torch.equal(out[1, :, 2, 1], patches[1, 2 * 4 + 1])
    assert (out != -1).all()
    # sequence-first layouts and square grids without a known size
    seq_first = torch.cat([torch.zeros(batch, 1, channels), patches[:, :9]], dim=1).transpose(0, 1)
    assert torch.equal(TokenGrid(1, batch_first=False)(seq_first)[0, :, 1, 2], patches[0, 5])
    with pytest.raises(ValueError, match="square"):
        TokenGrid(0)(patches[:, :10])
    assert GuessedReshape()(torch.zeros(2, 50, 8)).shape == (2, 8, 7, 7)


def test_vit_reshape_on_a_tiny_random_open_clip_vit(vit):
    layer = target_layer(vit)
    assert layer.name == "clip.visual.transformer.resblocks.1.ln_1"
    assert isinstance(layer.reshape_transform, TokenGrid) and layer.reshape_transform.num_prefix_tokens == 1
    captured = {}
    handle = layer.module.register_forward_hook(lambda module, inputs, output: captured.setdefault("tokens", output))
    with torch.no_grad():
        vit.image_module(torch.randn(2, 3, 64, 64))
    handle.remove()
    tokens = captured["tokens"]
    assert tokens.shape == (2, 1 + 8 * 8, 64)  # class token + 8x8 patches of 8 px, width 64, batch first
    grid = layer.reshape_transform(tokens)
    assert grid.shape == (2, 64, 8, 8)
    assert torch.equal(grid[0, :, 0, 0], tokens[0, 1]) and torch.equal(grid[1, :, 7, 7], tokens[1, -1])


def test_default_layers_per_family():
    rn = load_encoder("rn-tiny", TINY_RN)
    assert target_layer(rn).name == "clip.visual.layer4.0" and target_layer(rn).reshape_transform is None
    timm_cnn = load_encoder("r18", {"family": "timm", "name": "resnet18", "pretrained": False, "image_size": 64})
    assert target_layer(timm_cnn).name == "layer4"
    timm_vit = load_encoder("tv", {"family": "timm", "name": "test_vit", "pretrained": False, "image_size": 64})
    layer = target_layer(timm_vit)
    assert layer.name == f"blocks.{len(timm_vit.image_module.blocks) - 1}.norm1"
    assert layer.reshape_transform.num_prefix_tokens == timm_vit.image_module.num_prefix_tokens
    tv = load_encoder("tvr", {"family": "torchvision", "name": "resnet18", "pretrained": None, "image_size": 64})
    assert target_layer(tv).name == "layer4.1"
    override = target_layer(timm_cnn, "layer3")
    assert override.name == "layer3" and "configured" in override.rule
    with pytest.raises(VlmprobeError, match="not a module"):
        target_layer(timm_cnn, "layer9")
    with pytest.raises(VlmprobeError, match="pixels"):
        target_layer(load_encoder("px", {"family": "pixels", "image_size": 8}))


class _ToyCnn(torch.nn.Module):
    """Two convolutions, mean-pooled: 8-D embeddings of 16 x 16 inputs."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.last = torch.nn.Conv2d(4, 8, 3, padding=1)

    def forward(self, images):
        return torch.relu(self.last(torch.relu(self.stem(images)))).mean(dim=(2, 3))


def _toy_encoder(model_id: str, family: str, spec: dict):
    from torchvision import transforms

    from vlmprobe.models import Encoder

    torch.manual_seed(0)
    preprocess = transforms.Compose([transforms.Resize((16, 16)), transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.25] * 3)])
    return Encoder(model_id, family, spec, _ToyCnn(), preprocess, {}, embed_dim=8)


@pytest.fixture
def toy_families():
    """Two families registered for one test only, in test-local code: one whose ``cam_layer`` picks the
    *first* convolution (the base default is the last), and one without layers (the base ``cam_layer``)."""
    from vlmprobe.models import FAMILIES, ModelFamily, load_families, register_family

    load_families()  # the real families first, so nothing re-registers over the toys

    class ToyLayered(ModelFamily):
        name = "toy_layered"

        def check(self, model_id, spec):
            return None

        def load(self, model_id, spec, device="cpu"):
            return _toy_encoder(model_id, self.name, spec)

        def cam_layer(self, encoder):
            return encoder.image_module.stem, None, "toy: the first convolution"

    class ToyFlat(ModelFamily):
        name = "toy_flat"
        has_layers = False

        def check(self, model_id, spec):
            return None

        def load(self, model_id, spec, device="cpu"):
            return _toy_encoder(model_id, self.name, spec)

    try:
        yield [register_family(ToyLayered).name, register_family(ToyFlat).name]
    finally:
        FAMILIES.pop("toy_layered", None)
        FAMILIES.pop("toy_flat", None)


def test_heatmaps_ask_the_family_for_its_layer(tmp_path, toy_families):
    """A family's own ``cam_layer`` is what the heatmaps stage attributes, with no change outside the family."""
    layered, flat = toy_families
    encoder = load_encoder("toy", {"family": layered})
    layer = target_layer(encoder)
    assert layer.module is encoder.image_module.stem and layer.name == "stem" and layer.rule == "toy: the first convolution"
    assert target_layer(encoder, "last").name == "last"  # a configured layer still wins
    manifest = write_manifest(tmp_path)
    head = _save_head(tmp_path / "toy_head.safetensors", np.random.default_rng(0).normal(size=(3, 8)), np.zeros(3), "linear_probe")
    frame = run_heatmaps(
        manifest, "tiny", "toy", {"family": layered}, "lp", tmp_path / "maps", tmp_path / "scores.parquet",
        head_path=str(head), max_annotated=2, n_random=0, device="cpu",
    )
    provenance = read_maps(tmp_path / "maps" / "maps.npz")["provenance"]
    assert provenance["target_layer"] == "stem" and provenance["target_layer_rule"] == "toy: the first convolution"
    assert frame.height > 0 and provenance["input_size"] == [16, 16]

    no_layers = load_encoder("toy-flat", {"family": flat})
    for override in (None, "last"):
        with pytest.raises(VlmprobeError, match="toy_flat.*has no layers, so no Grad-CAM map"):
            target_layer(no_layers, override)


def test_method_names():
    assert method_class("GradCAM").__name__ == "GradCAM"
    assert method_class("grad-cam++").__name__ == "GradCAMPlusPlus"
    assert method_class("EigenCAM").__name__ == "EigenCAM"
    with pytest.raises(VlmprobeError, match="Unknown attribution method"):
        method_class("magic")


# ----------------------------------------------------------------------------------------------------
# geometry, maps
# ----------------------------------------------------------------------------------------------------


def test_geometry_resizes_whole_image_without_crop(vit):
    geometry = input_geometry(vit)
    assert geometry.size == (64, 64) and len(geometry.mean) == 3
    white_left = np.zeros((30, 90, 3), dtype=np.uint8)
    white_left[:, :30] = 255  # the left third is white: a centre crop would cut it off
    tensor = to_input(Image.fromarray(white_left), geometry)
    assert tensor.shape == (3, 64, 64)
    pixels = tensor[0] * geometry.std[0] + geometry.mean[0]
    assert pixels[:, :18].min() > 0.95 and pixels[:, 25:].max() < 0.05
    cam = np.zeros((8, 8), dtype=np.float32)
    cam[0, 0] = 1
    assert resize_map(cam, (30, 90)).shape == (30, 90)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "eigencam"])
def test_maps_have_input_shape_and_unit_range(vit, method):
    geometry = input_geometry(vit)
    inputs = torch.stack([to_input(_image(seed=i), geometry) for i in range(3)])
    scorer = ZeroShotScorer(vit.image_module, torch.nn.functional.normalize(torch.randn(len(CLASSES), vit.embed_dim), dim=-1))
    maps = compute_maps(scorer, target_layer(vit), inputs, [0, 1, 2], method=method, batch_size=2)
    assert maps.shape == (3, 64, 64) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert any(m.max() > 0.99 for m in maps)  # min-max scaled (an all-zero map is possible, not for all)


def test_targets_true_labels_then_top_false_positive():
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1], [1.0, 2.0, 3.0]])
    chosen = choose_targets(scores, [[0], [1, 2], [0, 1, 2]])
    assert chosen[0] == [(0, "true"), (1, "false_positive")]
    assert chosen[1] == [(1, "true"), (2, "true"), (0, "false_positive")]
    assert chosen[2] == [(0, "true"), (1, "true"), (2, "true")]  # nothing false to show


def test_gradients_flow_for_a_frozen_encoder(vit):
    """A linear probe's encoder is frozen elsewhere; Grad-CAM must still get gradients."""
    for parameter in vit.image_module.parameters():
        parameter.requires_grad_(False)
    head = torch.nn.Linear(vit.embed_dim, 2)
    inputs = to_input(_image(), input_geometry(vit))[None]
    maps = compute_maps(HeadScorer(vit.image_module, head), target_layer(vit), inputs, [1])
    assert maps.shape == (1, 64, 64) and maps.max() > 0


# ----------------------------------------------------------------------------------------------------
# the stage: a tiny manifest, all three settings
# ----------------------------------------------------------------------------------------------------


def write_manifest(tmp_path: Path, n: int = 12) -> Path:
    """A tiny multi-label manifest of 48 x 40 images: effusion (box at the bottom left), nodule (box top right)."""
    rows = {"sample_id": [], "path": [], "labels": [], "split": [], "fold": [], "boxes": [], "annotation_path": []}
    for i in range(n):
        pixels = np.full((40, 48), 60, dtype=np.uint8)
        labels, boxes = [], []
        if i % 3 == 0:
            pixels[25:38, 2:20] = 220
            labels.append("effusion")
            boxes.append({"label": "effusion", "x0": 2, "y0": 25, "x1": 20, "y1": 38})
        if i % 2 == 0:
            pixels[4:10, 36:42] = 250
            labels.append("nodule")
            boxes.append({"label": "nodule", "x0": 36, "y0": 4, "x1": 42, "y1": 10})
        path = tmp_path / "images" / f"s{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        rows["sample_id"].append(f"s{i:02d}")
        rows["path"].append(str(path))
        rows["labels"].append(labels or ["normal"])
        rows["split"].append("test" if i < 8 else "train")
        rows["fold"].append(None if i < 8 else i % 5)
        rows["boxes"].append(boxes)
        rows["annotation_path"].append(None)
    schema = pa.schema(
        [("sample_id", pa.string()), ("path", pa.string()), ("labels", pa.list_(pa.string())), ("split", pa.string()),
         ("fold", pa.int8()), ("boxes", pa.list_(BOX_TYPE)), ("annotation_path", pa.string())]
    ).with_metadata({METADATA_KEY: json.dumps({"dataset": "tiny", "classes": CLASSES, "multilabel": True, "seed": 0})})
    path = tmp_path / "manifest.parquet"
    pq.write_table(pa.table(rows, schema=schema), path)
    return path


def test_select_images_annotated_first_then_random(tmp_path):
    table = pq.read_table(write_manifest(tmp_path))
    # test rows s00..s07; annotated: s00, s02, s03, s04, s06 (boxes); unannotated: s01, s05, s07
    assert select_images(table, 10, 0, seed=0) == [0, 2, 3, 4, 6]
    limited = select_images(table, 3, 2, seed=0)
    # 3 of the 5 annotated, then 2 drawn from the rest of the test split (which may hold annotated ones)
    assert len(limited) == 5 and sum(i in (0, 2, 3, 4, 6) for i in limited) >= 3
    assert limited == select_images(table, 3, 2, seed=0)  # seeded
    assert all(i < 8 for i in select_images(table, 100, 100, seed=1))  # test split only


def _save_head(path: Path, weight: np.ndarray, bias: np.ndarray, source: str) -> Path:
    from vlmprobe.formats.heads import LinearHead, save_head

    save_head(path, LinearHead(weight=weight, bias=bias, classes=CLASSES, multilabel=True, thresholds=np.full(3, 0.5), source=source))
    return path


def _save_finetuned_encoder(path: Path, model_id: str, spec: dict) -> Path:
    """The finetune job's encoder.safetensors format (see vlmprobe.multilabel.finetune): image tower state + metadata."""
    from safetensors.torch import save_file

    torch.manual_seed(1)
    encoder = load_encoder(model_id, spec)
    state = {k: v.contiguous() for k, v in encoder.image_module.state_dict().items() if k.startswith("clip.visual.")}
    metadata = {"model_id": model_id, "spec": json.dumps(spec, sort_keys=True), "prefix": "clip.visual.", "format": "vlmprobe-finetune-1"}
    save_file(state, str(path), metadata=metadata)
    return path


def test_run_heatmaps_all_settings(tmp_path, vit):
    manifest = write_manifest(tmp_path)
    rng = np.random.default_rng(0)
    probe = _save_head(tmp_path / "lp_head.safetensors", rng.normal(size=(3, vit.embed_dim)), np.zeros(3), "linear_probe")
    ft_head = _save_head(tmp_path / "ft_head.safetensors", rng.normal(size=(3, vit.embed_dim)), np.zeros(3), "finetune")
    ft_encoder = _save_finetuned_encoder(tmp_path / "encoder.safetensors", "vit-tiny", TINY_VIT)
    common = dict(max_annotated=4, n_random=1, seed=0, rows_per_page=3, device="cpu", batch_size=4)
    results = {}
    for setting, files in {
        "zs": {"zero_shot": {"templates": ["an x-ray with {label}."]}},
        "lp": {"head_path": str(probe)},
        "ft": {"head_path": str(ft_head), "encoder_path": str(ft_encoder)},
    }.items():
        out_dir = tmp_path / "heatmaps" / setting
        scores_path = tmp_path / "heatmaps" / f"{setting}_scores.parquet"
        frame = run_heatmaps(manifest, "tiny", "vit-tiny", TINY_VIT, setting, out_dir, scores_path, **files, **common)
        results[setting] = frame
        assert pl.read_parquet(scores_path).equals(frame)
        provenance = json.loads(pq.read_schema(scores_path).metadata[b"vlmprobe"])
        assert provenance["target_layer"] == "clip.visual.transformer.resblocks.1.ln_1" and provenance["setting"] == setting
        assert len(provenance["selection"]["sample_ids"]) == 5
        # 5 images: every true label + one top false positive each
        n_true = sum(len(labels) for labels in _labels_of(manifest, provenance["selection"]["sample_ids"]))
        assert frame.height == n_true + 5
        assert frame.filter(pl.col("target_kind") == "false_positive").height == 5
        scored = frame.filter(pl.col("has_region"))
        assert scored.height == frame.filter((pl.col("target_kind") == "true") & (pl.col("label") != "normal")).height
        for column in ("pointing_game", "iou", "energy_fraction", "area_fraction"):
            assert scored[column].is_between(0, 1).all()
        assert frame.filter(~pl.col("has_region"))["pointing_game"].is_null().all()
        maps = read_maps(out_dir / "maps.npz")
        assert maps["maps"].shape == (frame.height, 64, 64) and maps["maps"].dtype == np.float16
        assert list(maps["label"]) == frame["label"].to_list()
        assert map_at_image_size(maps, 0).shape == (40, 48)
        assert sorted(p.name for p in out_dir.glob("overlays_*.png")) == ["overlays_01.png", "overlays_02.png"]
        # the stored maps reproduce the scores (float16 storage moves the energy fraction by a hair at most)
        from vlmprobe.heatmaps.scores import box_region, score_map

        for row in scored.iter_rows(named=True):
            boxes = [b for b in _boxes_of(manifest, row["sample_id"]) if b["label"] == row["label"]]
            again = score_map(map_at_image_size(maps, row["map_index"]), box_region((40, 48), boxes))
            assert again.area_fraction == row["area_fraction"]
            assert again.energy_fraction == pytest.approx(row["energy_fraction"], abs=0.01)
    assert results["zs"]["score"].abs().max() <= 1.0 + 1e-5  # cosine similarities
    assert not results["lp"]["score"].equals(results["ft"]["score"])


def test_run_heatmaps_refuses_what_cannot_work(tmp_path):
    manifest = write_manifest(tmp_path)
    with pytest.raises(VlmprobeError, match="text tower"):
        run_heatmaps(manifest, "tiny", "r18", {"family": "timm", "name": "resnet18", "pretrained": False, "image_size": 32}, "zs", tmp_path / "o", tmp_path / "s.parquet", device="cpu")
    with pytest.raises(VlmprobeError, match="head file"):
        run_heatmaps(manifest, "tiny", "vit-tiny", TINY_VIT, "lp", tmp_path / "o", tmp_path / "s.parquet", device="cpu")
    head = _save_head(tmp_path / "wrong.safetensors", np.zeros((3, 7)), np.zeros(3), "linear_probe")
    with pytest.raises(VlmprobeError, match="7-D"):
        run_heatmaps(manifest, "tiny", "vit-tiny", TINY_VIT, "lp", tmp_path / "o", tmp_path / "s.parquet", head_path=str(head), device="cpu")


def _labels_of(manifest: Path, sample_ids: list[str]) -> list[list[str]]:
    table = pq.read_table(manifest).to_pylist()
    return [row["labels"] for row in table if row["sample_id"] in sample_ids]


def _boxes_of(manifest: Path, sample_id: str) -> list[dict]:
    return next(row["boxes"] for row in pq.read_table(manifest).to_pylist() if row["sample_id"] == sample_id)
