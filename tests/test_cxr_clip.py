"""``cxr_clip``: checkpoints in the released container and key layout (cxrclip/trainer.py:161-171: ``model``,
``optimizer``, ``scheduler``, ``config``, ``epoch``, ``train_loss``; Swin keys as transformers 4 named them when
the files were written) load through the config, and embed as the authors' ``encode_image`` computed here on a
reference model, after their evaluation transform re-implemented here from cxrclip/data/data_utils.py."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from support.cam import family_map
from transformers import SwinConfig, SwinModel

from vlmprobe.errors import VlmprobeError
from vlmprobe.models import check_spec, load_encoder

SWIN = {"image_size": 32, "patch_size": 4, "embed_dim": 8, "depths": [1, 1], "num_heads": [1, 2], "window_size": 4}

# transformers 4.x Swin key names (what the released swint_*.tar hold), from the installed names, written out here
# independently of the family's use of transformers' own conversion mapping
TO_TRANSFORMERS_4 = [
    (r"attention\.q_proj", "attention.self.query"),
    (r"attention\.k_proj", "attention.self.key"),
    (r"attention\.v_proj", "attention.self.value"),
    (r"attention\.relative_position_bias\.relative_position_bias_table", "attention.self.relative_position_bias_table"),
    (r"attention\.o_proj", "attention.output.dense"),
    (r"mlp\.fc1", "intermediate.dense"),
    (r"mlp\.fc2", "output.dense"),
]


def _container(model_state: dict) -> dict:
    """The trainer's container, with the objects research checkpoints carry beside the weights."""
    text = {"text_encoder.embeddings.word_embeddings.weight": torch.randn(30, 8),
            "text_projection.projection.weight": torch.randn(512, 768), "text_projection.projection.bias": torch.zeros(512),
            "logit_scale": torch.tensor(2.659)}
    return {
        "model": {**model_state, **text},
        "optimizer": {"state": {}, "param_groups": [{"lr": 5e-5, "params": [0, 1]}]},
        "scheduler": {"last_epoch": 9},
        "config": {"model": {"image_encoder": {"name": "microsoft/swin-tiny-patch4-window7-224"}}, "args": argparse.Namespace(seed=1234)},
        "epoch": np.int64(10),
        "train_loss": np.float64(1.25),
    }


@pytest.fixture(scope="module")
def swin_release(tmp_path_factory):
    torch.manual_seed(0)
    swin = SwinModel(SwinConfig(**SWIN)).eval()
    head = torch.nn.Linear(swin.config.hidden_size, 512)
    state = {}
    for key, value in swin.state_dict().items():
        for pattern, old in TO_TRANSFORMERS_4:
            key = re.sub(pattern, old, key)
        state[f"image_encoder.image_encoder.{key}"] = value.clone()
    for name in [k for k in state if k.endswith("attention.self.relative_position_bias_table")]:  # transformers 4 kept the index
        state[name.replace("bias_table", "index")] = torch.zeros(16, dtype=torch.long)
    state["image_projection.projection.weight"] = head.weight.detach().clone()
    state["image_projection.projection.bias"] = head.bias.detach().clone()
    path = tmp_path_factory.mktemp("cxr") / "swint_mc.tar"
    torch.save(_container(state), path)
    return swin, head, path


def authors_transform(image: Image.Image, size: int, mean, std) -> torch.Tensor:
    """cxrclip/data/data_utils.py:48-68 with configs/transform/clahe.yaml ``test``: Resize, CenterCrop, ToTensor, Normalize."""
    image = torchvision.transforms.CenterCrop(size)(torchvision.transforms.Resize(size)(image.convert("RGB")))
    array = torch.tensor(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
    return (array - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def _image(width=71, height=45, seed=1):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_swin_release_embeds_as_the_authors_encode_image(swin_release):
    swin, head, path = swin_release
    spec = {"family": "cxr_clip", "name": "swin_tiny", "pretrained": str(path), "image_size": 32, "swin_config": SWIN}
    check_spec("cxr", spec)
    encoder = load_encoder("cxr", spec)
    images = [_image(seed=s) for s in (1, 2)]
    batch = torch.stack([authors_transform(i, 32, [0.5] * 3, [0.5] * 3) for i in images])
    ours = torch.stack([encoder.preprocess(i) for i in images])
    torch.testing.assert_close(ours, batch, atol=1e-6, rtol=0)
    with torch.no_grad():
        reference = swin(pixel_values=batch).last_hidden_state[:, 0]  # clip.py:52-54: the first token
        torch.testing.assert_close(encoder.encode_image(ours), reference, atol=1e-5, rtol=1e-4)
        projected = load_encoder("cxr", {**spec, "output": "projected"}).encode_image(batch)
        expected = head(reference)
        torch.testing.assert_close(projected, expected / expected.norm(dim=1, keepdim=True), atol=1e-5, rtol=1e-4)
        pooled = load_encoder("cxr", {**spec, "output": "pooled"}).encode_image(batch)
        torch.testing.assert_close(pooled, swin(pixel_values=batch).pooler_output, atol=1e-5, rtol=1e-4)
    fit = encoder.checkpoint_fit
    assert fit["container"] == "model" and fit["filter"].endswith("_swin_renames")
    assert "argparse.Namespace" in fit["set_aside_objects"] and fit["dropped_construction_buffers"]["count"] == 2
    assert encoder.embed_dim == swin.config.hidden_size


def test_grad_cam_sees_every_token_of_the_first_token_feature(swin_release):
    spec = {"family": "cxr_clip", "name": "swin_tiny", "pretrained": str(swin_release[2]), "image_size": 32, "swin_config": SWIN}
    encoder = load_encoder("cxr", spec)
    maps, rule = family_map(encoder, torch.stack([authors_transform(_image(seed=s), 32, [0.5] * 3, [0.5] * 3) for s in (1, 2)]))
    assert maps.shape == (2, 32, 32) and "layernorm_before" in rule
    assert (maps > 0).mean() > 0.25  # not one cell: the block's attention spreads the first token's gradient


@pytest.mark.slow
def test_resnet_release_embeds_as_the_authors_resnet50(tmp_path):
    torch.manual_seed(0)
    resnet = torchvision.models.resnet50(weights=None).eval()
    del resnet.fc
    state = {f"image_encoder.resnet.{k}": v for k, v in resnet.state_dict().items()}
    head = torch.nn.Linear(2048, 512)
    state.update({"image_projection.projection.weight": head.weight.detach(), "image_projection.projection.bias": head.bias.detach()})
    path = tmp_path / "r50_mcc.tar"
    torch.save(_container(state), path)
    encoder = load_encoder("cxr", {"family": "cxr_clip", "name": "resnet50", "pretrained": str(path), "image_size": 64})
    batch = torch.stack([authors_transform(_image(seed=s), 64, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]) for s in (1, 2)])
    torch.testing.assert_close(encoder.preprocess(_image(seed=1)), batch[0], atol=1e-6, rtol=0)
    with torch.no_grad():
        resnet.fc = torch.nn.Identity()
        torch.testing.assert_close(encoder.encode_image(batch), resnet(batch), atol=1e-4, rtol=1e-4)
    assert encoder.embed_dim == 2048


def test_the_offline_check_names_wrong_files_and_settings(swin_release, tmp_path):
    path = str(swin_release[2])
    with pytest.raises(VlmprobeError, match=r"r50_m\.tar.*image_encoder\.resnet\."):
        check_spec("cxr", {"family": "cxr_clip", "name": "resnet50", "pretrained": path})  # a Swin file named as ResNet
    with pytest.raises(VlmprobeError, match="swin_tiny"):
        check_spec("cxr", {"family": "cxr_clip", "name": "swint_mc", "pretrained": path})
    with pytest.raises(VlmprobeError, match="first_token"):
        check_spec("cxr", {"family": "cxr_clip", "name": "resnet50", "pretrained": path, "output": "first_token"})
    with pytest.raises(VlmprobeError, match="not at"):
        check_spec("cxr", {"family": "cxr_clip", "name": "swin_tiny", "pretrained": str(tmp_path / "swint_mc.tar")})


@pytest.mark.slow
def test_the_embedding_stage_runs_it_and_records_what_was_set_aside(swin_release, tmp_path, image_folder):
    """Through the embedding stage as a workflow job runs it: the table's metadata says what the container held."""
    from vlmprobe.datasets import make_manifest
    from vlmprobe.embed import embed_manifest
    from vlmprobe.formats.embeddings import read_embeddings

    manifest = tmp_path / "m.parquet"
    make_manifest("folder", {"kind": "imagefolder", "root": str(image_folder)}, 0, 0.2, 5, manifest, tmp_path / "d", tmp_path)
    out = tmp_path / "e.parquet"
    spec = {"family": "cxr_clip", "name": "swin_tiny", "pretrained": str(swin_release[2]), "image_size": 32, "swin_config": SWIN}
    embed_manifest(manifest, "cxr", spec, out, device="cpu", batch_size=8, num_workers=0)
    table = read_embeddings(out)
    assert "argparse.Namespace" in table.metadata["checkpoint_fit"]["set_aside_objects"]
    assert table.metadata["checkpoint_fit"]["container"] == "model"


def test_the_default_swin_is_swin_tiny_patch4_window7_224():
    """Without `swin_config`, the architecture of microsoft/swin-tiny-patch4-window7-224 (768-D, 49 final tokens)."""
    from vlmprobe.models.families.cxr_clip_family import _tower_class

    head = torch.nn.Module()
    head.projection = torch.nn.Linear(768, 512)
    with torch.device("meta"):
        tower = _tower_class()("swin_tiny", "first_token", head, {})
    swin = tower.image_encoder.image_encoder
    assert swin.config.embed_dim == 96 and list(swin.config.depths) == [2, 2, 6, 2] and swin.num_features == 768
    assert swin.config.window_size == 7 and swin.config.image_size == 224
