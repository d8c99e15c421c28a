"""Checkpoints that are wrong in quiet ways fail early, with the true cause (issue 21): integer weights,
NaN / Inf in a weight (said from the file, naming the tensor, before any image is read), a folder given
as `pretrained:`, and a TorchScript archive."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from safetensors.torch import save_file
from support import TINY_VIT

from vlmprobe.errors import VlmprobeError
from vlmprobe.models import load_encoder
from vlmprobe.models.base import check_spec

TIMM = {"family": "timm", "name": "test_efficientnet", "image_size": 32}
TORCHVISION = {"family": "torchvision", "name": "mobilenet_v3_small", "image_size": 32}


def _timm_state() -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(0)
    return {k: v.clone() for k, v in timm.create_model("test_efficientnet", num_classes=5).state_dict().items()}


def _save(state, path) -> str:
    if str(path).endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return str(path)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_weight_is_named_from_the_file_before_any_model_runs(tmp_path, suffix, bad):
    state = _timm_state()
    name = "blocks.0.0.conv.weight"
    state[name].view(-1)[3] = bad
    path = _save(state, tmp_path / f"w{suffix}")
    with pytest.raises(VlmprobeError) as caught:
        check_spec("m", {**TIMM, "pretrained": path})  # the offline check: no model built, no image read
    text = str(caught.value)
    assert name in text and "NaN or Inf" in text and path in text
    assert ("1 NaN" if math.isnan(bad) else "1 Inf") in text
    assert "precision" not in caught.value.fix  # the file is at fault, not fp16


def test_integer_weights_are_refused_not_cast(tmp_path):
    state = _timm_state()
    everything_integer = {k: (v * 100).long() for k, v in state.items()}
    with pytest.raises(VlmprobeError, match="only integer tensors"):
        check_spec("m", {**TIMM, "pretrained": _save(everything_integer, tmp_path / "all.pt")})
    # floats beside a few integer learned weights pass the file check but not the fit to the architecture
    some_integer = dict(state)
    some_integer["conv_stem.weight"] = (state["conv_stem.weight"] * 100).to(torch.int8)
    path = _save(some_integer, tmp_path / "some.safetensors")
    with pytest.raises(VlmprobeError) as caught:
        load_encoder("m", {**TIMM, "pretrained": path})
    assert "conv_stem.weight (int8)" in str(caught.value) and "integer" in str(caught.value)


def test_integer_construction_buffers_are_still_fine(tmp_path):
    state = _timm_state()
    assert any(not v.dtype.is_floating_point for v in state.values())  # num_batches_tracked
    encoder = load_encoder("m", {**TIMM, "pretrained": _save(state, tmp_path / "ok.pt")})
    assert encoder.checkpoint_fit is not None


@pytest.mark.parametrize("spec", [TIMM, TORCHVISION, {**TINY_VIT, "preprocess_like": None}], ids=["timm", "torchvision", "open_clip"])
def test_a_folder_as_pretrained_is_called_a_folder(tmp_path, spec):
    folder = tmp_path / "downloaded_model"
    folder.mkdir()
    _save(_timm_state(), folder / "model.safetensors")
    with pytest.raises(VlmprobeError) as caught:
        check_spec("m", {**{k: v for k, v in spec.items() if v is not None}, "pretrained": str(folder)})
    text = str(caught.value)
    assert "is a folder" in text and "model.safetensors" in text and "does not exist" not in text
    assert str(folder / "model.safetensors") in caught.value.fix or spec["family"] == "open_clip"
    if spec["family"] == "open_clip":
        assert "local-dir:" in caught.value.fix


def test_a_torchscript_archive_is_named_and_the_way_out_given(tmp_path):
    import timm

    model = timm.create_model("test_efficientnet", num_classes=5).eval()
    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model, torch.zeros(1, 3, 32, 32)), path)
    with pytest.raises(VlmprobeError) as caught:
        check_spec("m", {**TIMM, "pretrained": str(path)})
    assert "TorchScript archive" in str(caught.value) and "corrupt" not in caught.value.fix
    assert "torch.jit.load" in caught.value.fix and ".state_dict()" in caught.value.fix
    # the way out works: the extracted state dict loads
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(torch.jit.load(str(path), map_location="cpu").state_dict(), tmp_path / "weights.pt")
    assert load_encoder("m", {**TIMM, "pretrained": str(tmp_path / "weights.pt")}).checkpoint_fit is not None
