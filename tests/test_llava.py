"""``llava``: a LLaVA-format repository folder (config.json, model.safetensors.index.json, fp16 shards with the vision
tower and projector beside the language model) embeds as LLaVA's ``encode_images`` computed here on a reference
CLIP tower and a hand-written projector, after ``process_images`` re-done with PIL; the language-model shards are
garbage on disk, so a single read of them would fail; S2 is checked against a tile-by-tile reference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from support.cam import family_map
from transformers import CLIPVisionConfig, CLIPVisionModel

from vlmprobe.errors import VlmprobeError
from vlmprobe.models import check_spec, load_encoder

TOWER = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "image_size": 32, "patch_size": 8}
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def tower_folder(path, with_weights=None):
    """A staged CLIP tower repository (local-dir:): config.json and the CLIP image processor's config."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({**TOWER, "model_type": "clip_vision_model"}))
    (path / "preprocessor_config.json").write_text(json.dumps({"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32},
                                                               "image_mean": MEAN, "image_std": STD, "resample": 3}))
    if with_weights is not None:
        with_weights.save_pretrained(path)
    return path


def write_llava(folder, tower: CLIPVisionModel, projector: dict, config: dict, include_tower=True):
    """The repository as downloaded: three shards, the image side in the last one beside language-model layers,
    the first two written as garbage (never to be read). fp16, as LLaVA-Med's release."""
    folder.mkdir(parents=True, exist_ok=True)
    image_side = {f"model.mm_projector.{k}": v for k, v in projector.items()}
    if include_tower:
        image_side.update({f"model.vision_tower.vision_tower.vision_model.{k}": v for k, v in tower.state_dict().items()})
        image_side["model.vision_tower.vision_tower.vision_model.embeddings.position_ids"] = torch.arange(17)[None]  # transformers 4 saved it
    last = {k: v.half() if v.dtype.is_floating_point else v for k, v in image_side.items()}
    last.update({"model.layers.31.mlp.up_proj.weight": torch.randn(24, 8).half(), "lm_head.weight": torch.randn(100, 24).half()})
    save_file({k: v.contiguous() for k, v in last.items()}, folder / "model-00003-of-00003.safetensors")
    weight_map = {k: "model-00003-of-00003.safetensors" for k in last}
    for shard, keys in (("model-00001-of-00003.safetensors", ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight"]),
                        ("model-00002-of-00003.safetensors", ["model.layers.15.mlp.down_proj.weight"])):
        (folder / shard).write_bytes(b"\x00garbage: a language-model shard that must never be opened\xff" * 10)
        weight_map.update({k: shard for k in keys})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlavaMistralForCausalLM"], "model_type": "llava_mistral",
                                                    "mm_vision_tower": "openai/clip-vit-large-patch14-336", "mm_vision_select_layer": -2,
                                                    "mm_vision_select_feature": "patch", "mm_projector_type": "mlp2x_gelu",
                                                    "image_aspect_ratio": "pad", "hidden_size": 24, **config}))
    return folder


def fp16_roundtrip(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.half().float())
    return module


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    tower = fp16_roundtrip(CLIPVisionModel(CLIPVisionConfig(**TOWER)).eval())
    projector = {"0.weight": torch.randn(24, 16) * 0.3, "0.bias": torch.randn(24) * 0.1, "2.weight": torch.randn(24, 24) * 0.3, "2.bias": torch.randn(24) * 0.1}
    s2_projector = {**projector, "0.weight": torch.randn(24, 48) * 0.3}
    return tower, {k: v.half().float() for k, v in projector.items()}, {k: v.half().float() for k, v in s2_projector.items()}


def project(features, p):
    return (F.gelu(features @ p["0.weight"].T + p["0.bias"]) @ p["2.weight"].T + p["2.bias"])


def authors_process(image: Image.Image, size: int) -> torch.Tensor:
    """mm_utils.py:32-46 (pad) with the deterministic offset, then the CLIP processor, with PIL."""
    w, h = image.size
    side = max(w, h)
    square = Image.new(image.mode, (side, side), tuple(int(x * 255) for x in MEAN))
    square.paste(image, ((side - w) // 2, 0) if h > w else (0, (side - h) // 2))
    array = np.asarray(square.resize((size, size), Image.BICUBIC), dtype=np.float32) / 255
    return (torch.tensor(array).permute(2, 0, 1) - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def _image(width=45, height=29, seed=1):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_llava_med_folder_embeds_as_encode_images(parts, tmp_path):
    tower, projector, _ = parts
    folder = write_llava(tmp_path / "llava-med-v1.5-mistral-7b", tower, projector, {"mm_hidden_size": 16})
    spec = {"family": "llava", "name": "microsoft/llava-med-v1.5-mistral-7b", "pretrained": str(folder),
            "vision_tower": f"local-dir:{tower_folder(tmp_path / 'clip')}"}
    check_spec("llava-med", spec)
    encoder = load_encoder("llava-med", spec)
    images = [_image(45, 29, seed=1), _image(20, 37, seed=2)]
    batch = torch.stack([authors_process(i, 32) for i in images])
    torch.testing.assert_close(torch.stack([encoder.preprocess(i) for i in images]), batch, atol=1e-6, rtol=0)
    with torch.no_grad():
        patches = tower(pixel_values=batch, output_hidden_states=True).hidden_states[-2][:, 1:]
        torch.testing.assert_close(encoder.encode_image(batch), project(patches, projector).mean(1), atol=1e-5, rtol=1e-4)
        for output, expected in (("penultimate_mean", patches.mean(1)), ("pooled", tower(pixel_values=batch).pooler_output)):
            torch.testing.assert_close(load_encoder("llava-med", {**spec, "output": output}).encode_image(batch), expected, atol=1e-5, rtol=1e-4)
    fit = encoder.checkpoint_fit
    assert fit["shards_read"] == ["model-00003-of-00003.safetensors"] and fit["cast_from"] == {"float16": len(tower.state_dict())}
    assert fit["vision_tower_from"].startswith("checkpoint") and encoder.embed_dim == 24


def test_a_checkpoint_without_the_tower_takes_it_from_vision_tower(parts, tmp_path):
    tower, projector, _ = parts
    folder = write_llava(tmp_path / "llava-v1.5-7b", tower, projector, {"mm_hidden_size": 16}, include_tower=False)
    spec = {"family": "llava", "name": "liuhaotian/llava-v1.5-7b", "pretrained": str(folder), "output": "penultimate_mean",
            "vision_tower": f"local-dir:{tower_folder(tmp_path / 'clip', with_weights=tower)}"}
    encoder = load_encoder("llava", spec)
    batch = authors_process(_image(), 32)[None]
    with torch.no_grad():
        expected = tower(pixel_values=batch, output_hidden_states=True).hidden_states[-2][:, 1:].mean(1)
        torch.testing.assert_close(encoder.encode_image(batch), expected, atol=1e-5, rtol=1e-4)
    assert encoder.checkpoint_fit["vision_tower_from"].startswith("vision_tower: ")


def test_grad_cam_attributes_the_selected_layer(parts, tmp_path):
    tower, projector, s2_projector = parts
    clip = f"local-dir:{tower_folder(tmp_path / 'clip')}"
    spec = {"family": "llava", "name": "m", "pretrained": str(write_llava(tmp_path / "l", tower, projector, {"mm_hidden_size": 16})), "vision_tower": clip}
    maps, rule = family_map(load_encoder("llava", spec), authors_process(_image(), 32)[None])
    assert maps.shape == (1, 32, 32) and maps.max() > 0 and "layers[-2]" in rule
    s2 = {**spec, "pretrained": str(write_llava(tmp_path / "s2", tower, s2_projector, {"mm_hidden_size": 48, "s2": True, "s2_scales": "32,64,96"}))}
    with pytest.raises(VlmprobeError, match="S2"):
        family_map(load_encoder("llava", s2), authors_process(_image(), 96)[None])


def s2_reference(tower, images, scales):
    """s2wrapper/core.py:14-62 for one batch, tile by tile with explicit slicing."""
    grids = []
    for size in scales:
        n = -(-size // scales[0])
        x = F.interpolate(images, size=size, mode="bicubic")
        tile = size // n
        rows = []
        for i in range(n):
            row = []
            for j in range(n):
                tokens = tower(pixel_values=x[:, :, i * tile:(i + 1) * tile, j * tile:(j + 1) * tile], output_hidden_states=True).hidden_states[-2][:, 1:]
                side = int(tokens.shape[1] ** 0.5)
                row.append(tokens.transpose(1, 2).reshape(images.shape[0], -1, side, side))
            rows.append(torch.cat(row, dim=3))
        grids.append(torch.cat(rows, dim=2))
    out = torch.cat([F.interpolate(g, size=grids[0].shape[-2], mode="area") for g in grids], dim=1)
    return out.flatten(2).transpose(1, 2)


def test_s2_checkpoint_runs_the_tower_at_three_scales(parts, tmp_path):
    tower, _, s2_projector = parts
    folder = write_llava(tmp_path / "llava-med-pp", tower, s2_projector, {"mm_hidden_size": 48, "s2": True, "s2_scales": "32,64,96"})
    spec = {"family": "llava", "name": "yunfeixie/LLaVA-Tri-VQARAD", "pretrained": str(folder), "vision_tower": f"local-dir:{tower_folder(tmp_path / 'clip')}"}
    encoder = load_encoder("llava-med-plus", spec)
    image = _image(50, 31, seed=4)
    batch = authors_process(image, 96)[None]  # the processor works at the largest scale
    torch.testing.assert_close(encoder.preprocess(image), batch[0], atol=1e-6, rtol=0)
    with torch.no_grad():
        features = s2_reference(tower, batch, [32, 64, 96])
        assert features.shape == (1, 16, 48)
        torch.testing.assert_close(encoder.encode_image(batch), project(features, s2_projector).mean(1), atol=1e-5, rtol=1e-4)
        penultimate = load_encoder("llava-med-plus", {**spec, "output": "penultimate_mean"})
        torch.testing.assert_close(penultimate.encode_image(batch), features.mean(1), atol=1e-5, rtol=1e-4)
    assert penultimate.embed_dim == 48


def test_the_offline_check_names_a_missing_shard_or_a_wrong_folder(parts, tmp_path):
    tower, projector, _ = parts
    folder = write_llava(tmp_path / "llava", tower, projector, {"mm_hidden_size": 16})
    spec = {"family": "llava", "name": "microsoft/llava-med-v1.5-mistral-7b", "pretrained": str(folder),
            "vision_tower": f"local-dir:{tower_folder(tmp_path / 'clip')}"}
    (folder / "model-00001-of-00003.safetensors").unlink()  # a language-model shard: not needed
    check_spec("llava", spec)
    (folder / "model-00003-of-00003.safetensors").unlink()
    with pytest.raises(VlmprobeError, match=r"model-00003-of-00003\.safetensors.*not there"):
        check_spec("llava", spec)
    with pytest.raises(VlmprobeError, match="not a downloaded LLaVA repository folder"):
        check_spec("llava", {**spec, "pretrained": str(tmp_path / "nowhere")})
    with pytest.raises(VlmprobeError, match="names no `mm_vision_tower`"):
        check_spec("llava", {**spec, "pretrained": str(tower_folder(tmp_path / "just-clip"))})


def test_the_presets_tower_resolves_offline_at_full_size():
    """LLaVA-Med's `mm_vision_tower` (openai/clip-vit-large-patch14-336) from vlmprobe's vendored record, built on
    the meta device: 336 px, patch 14 (577 positions), 1024 wide, 24 layers; the projector 1024 (3072 with S2) -> 4096."""
    from vlmprobe.models.families.llava_family import _projector, _settings, _tower_source

    config = {"mm_vision_tower": "openai/clip-vit-large-patch14-336", "mm_projector_type": "mlp2x_gelu", "s2": True}
    source, tower_config, processor = _tower_source("llava-med", {}, config)
    assert (tower_config.image_size, tower_config.patch_size, tower_config.hidden_size, tower_config.num_hidden_layers) == (336, 14, 1024, 24)
    assert processor["shortest_edge"] == processor["crop_size"] == 336 and processor["mean"] == MEAN
    assert _settings("llava-med", {}, config)["s2_scales"] == [336, 672, 1008]  # s2wrapper's default scales
    with torch.device("meta"):
        tower = CLIPVisionModel(tower_config)
        projector = _projector("mlp2x_gelu", 3 * 1024, 4096)
    assert tower.embeddings.position_embedding.weight.shape == (577, 1024)
    assert [tuple(p.shape) for p in projector.parameters()] == [(4096, 3072), (4096,), (4096, 4096), (4096,)]
