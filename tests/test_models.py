from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from support import PIXELS, TINY_RN, TINY_VIT

from vlmprobe.errors import VlmprobeError
from vlmprobe.models import check_spec, load_encoder


@pytest.mark.parametrize(
    "spec, dim",
    [
        (PIXELS, 256),
        (TINY_VIT, 64),
        (TINY_RN, 64),
        ({"family": "timm", "name": "resnet18", "pretrained": False, "image_size": 32}, 512),
        ({"family": "torchvision", "name": "resnet18", "pretrained": None, "image_size": 32}, 512),
    ],
)
def test_every_family_encodes_an_image(spec, dim):
    encoder = load_encoder("m", spec)
    batch = torch.stack([encoder.preprocess(Image.new("RGB", (40, 30), (200, 10, 10)))] * 2)
    with torch.no_grad():
        features = encoder.encode_image(batch)
    assert features.shape == (2, dim) == (2, encoder.embed_dim)
    assert torch.isfinite(features).all()


def test_open_clip_text_tower_uses_bundled_tokenizer():
    encoder = load_encoder("m", TINY_VIT)
    assert encoder.has_text_tower
    with torch.no_grad():
        text = encoder.encode_text(["a chest x-ray showing effusion", "normal"])
    assert text.shape == (2, 64)
    assert not load_encoder("p", PIXELS).has_text_tower


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"family": "open_clip", "name": "ViT-B-61", "pretrained": None}, r"unknown open_clip architecture 'ViT-B-61'.*ViT-B-16"),
        ({"family": "open_clip", "name": "ViT-B-16", "pretrained": "openia"}, r"unknown pretrained tag.*openai"),
        ({"family": "open_clip", "name": "ViT-B-16", "pretrained": "/no/such/file.pt"}, "does not exist"),
        ({"family": "timm", "name": "resnet181", "pretrained": False}, "unknown timm model"),
        ({"family": "torchvision", "name": "vgg61", "pretrained": None}, "unknown torchvision model"),
        ({"family": "cnn-zoo", "name": "x"}, "unknown family"),
        ({"family": "open_clip", "name": "local-dir:/no/such/dir"}, "open_clip_config.json"),
    ],
)
def test_bad_model_specs_fail_offline_with_a_fix(spec, message):
    with pytest.raises(VlmprobeError, match=message):
        check_spec("bad-model", spec)


def test_known_real_names_resolve_offline():
    check_spec("clip", {"family": "open_clip", "name": "ViT-B-16", "pretrained": "openai"})
    check_spec("biomedclip", {"family": "open_clip", "name": "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"})
    check_spec("vgg", {"family": "torchvision", "name": "vgg16", "pretrained": "IMAGENET1K_V1"})


def test_checkpoint_file_needs_its_preprocessing_and_round_trips(tmp_path):
    source = load_encoder("m", TINY_VIT)
    model = source.extras["open_clip_model"]
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    spec = {"family": "open_clip", "name": "vlmprobe-vit-tiny", "pretrained": str(path)}
    with pytest.raises(VlmprobeError, match="preprocess"):
        check_spec("m", spec)
    spec["preprocess"] = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bilinear", "resize_mode": "squash"}
    loaded = load_encoder("m", spec)
    assert loaded.checkpoint_sha256 and len(loaded.checkpoint_sha256) == 64
    assert loaded.preprocess_info["open_clip_preprocess_cfg"]["mean"] == [0.5, 0.5, 0.5]
    batch = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.encode_image(batch), source.encode_image(batch), atol=1e-6)
    # the same weights under a sidecar open_clip_config.json
    del spec["preprocess"]
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"preprocess_cfg": {"mean": [0.1, 0.2, 0.3], "std": [1, 1, 1]}}))
    assert load_encoder("m", spec).preprocess_info["open_clip_preprocess_cfg"]["mean"] == [0.1, 0.2, 0.3]


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    model = load_encoder("m", TINY_RN).extras["open_clip_model"]
    path = tmp_path / "rn.pt"
    torch.save(model.state_dict(), path)
    spec = {"family": "open_clip", "name": "vlmprobe-vit-tiny", "pretrained": str(path), "preprocess_like": "openai"} 
    with pytest.raises(VlmprobeError):
        load_encoder("m", spec)


def test_local_dir_route(tmp_path):
    from vlmprobe.models.families.open_clip_family import CONFIG_DIR

    source = load_encoder("m", TINY_VIT).extras["open_clip_model"]
    folder = tmp_path / "staged"
    folder.mkdir()
    config = {"model_cfg": json.loads((CONFIG_DIR / "vlmprobe-vit-tiny.json").read_text()), "preprocess_cfg": {"mean": [0.3, 0.3, 0.3], "std": [0.2, 0.2, 0.2]}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, folder / "open_clip_model.safetensors")
    encoder = load_encoder("m", {"family": "open_clip", "name": f"local-dir:{folder}"})
    assert encoder.preprocess_info["open_clip_preprocess_cfg"]["mean"] == [0.3, 0.3, 0.3]
    batch = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(encoder.encode_image(batch), source.encode_image(batch), atol=1e-6)
