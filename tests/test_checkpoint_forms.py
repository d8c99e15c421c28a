"""Checkpoints as researchers have them: every common form of the same weights loads to identical
embeddings, in every family; a checkpoint of another architecture still fails, naming the mismatch."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from support import TINY_VIT

from vlmprobe.errors import VlmprobeError
from vlmprobe.models import load_encoder
from vlmprobe.models.checkpoints import load_state_dict

SPECS = {
    "timm": {"family": "timm", "name": "test_efficientnet", "image_size": 32},
    "timm-vit": {"family": "timm", "name": "test_vit", "image_size": 32},
    "torchvision": {"family": "torchvision", "name": "mobilenet_v3_small", "image_size": 32},
    "open_clip": {**TINY_VIT, "preprocess_like": None, "preprocess": {"mean": [0.5] * 3, "std": [0.25] * 3}},
}


def _source(family: str):
    """A randomly initialised model of the family (the 'trained' weights) and its full state dict,
    classifier included as its authors would save it."""
    spec = {k: v for k, v in SPECS[family].items() if v is not None}
    torch.manual_seed(0)
    if family.startswith("timm"):
        import timm

        model = timm.create_model(spec["name"], num_classes=5)
    elif family == "torchvision":
        import torchvision

        model = torchvision.models.get_model(spec["name"], weights=None, num_classes=5)
    else:
        model = load_encoder("source", spec).extras["open_clip_model"]
    with torch.no_grad():  # non-trivial BN statistics, so a lost buffer would show in the embeddings
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    return spec, {k: v.clone() for k, v in model.state_dict().items()}


def _embed(spec: dict, path=None) -> tuple[torch.Tensor, dict | None]:
    spec = {k: v for k, v in spec.items() if v is not None}
    if path is not None:
        spec["pretrained"] = str(path)
    encoder = load_encoder("m", spec)
    size = 64 if spec["family"] == "open_clip" else 32
    batch = torch.linspace(-1, 1, 2 * 3 * size * size).reshape(2, 3, size, size)
    with torch.no_grad():
        return encoder.encode_image(batch), encoder.checkpoint_fit


def _head_keys(family: str, state: dict) -> list[str]:
    prefix = {"timm": "classifier.", "timm-vit": "head.", "torchvision": "classifier.3.", "open_clip": "\0"}[family]
    return [k for k in state if k.startswith(prefix)]


def _forms(family: str, state: dict) -> dict[str, tuple[object, str, str | None]]:
    """form name -> (object to save, file suffix, checkpoint_key or None)."""
    no_head = {k: v for k, v in state.items() if k not in _head_keys(family, state)}
    other_head = dict(state)
    for key in _head_keys(family, state):
        other_head[key] = torch.zeros((9, *state[key].shape[1:]))  # a classifier of another size
    noise = {k: v + 1 if v.dtype.is_floating_point else v for k, v in state.items()}
    return {
        "plain": (state, ".pt", None),
        "safetensors": (state, ".safetensors", None),
        "lightning": ({"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 3, "optimizer_states": [{}]}, ".ckpt", None),
        "mae-model-with-decoder": ({"model": {**state, "decoder_embed.weight": torch.zeros(4, 4), "mask_token": torch.zeros(1, 1, 4)}, "epoch": 9}, ".pth", None),
        "ddp-module": ({f"module.{k}": v for k, v in state.items()}, ".pth", None),
        "backbone-prefix": ({f"backbone.{k}": v for k, v in no_head.items()}, ".pth", None),
        "encoder-prefix": ({f"encoder.{k}": v for k, v in state.items()}, ".safetensors", None),
        "dino-teacher-student": (
            {"teacher": {**{f"backbone.{k}": v for k, v in no_head.items()}, "head.mlp.0.weight": torch.zeros(3, 3)},
             "student": {f"backbone.{k}": v for k, v in noise.items()}, "epoch": 100},
            ".pth", None,
        ),
        "ema-beside": ({"state_dict": noise, "state_dict_ema": state}, ".pth", None),
        "ema-beside-chosen": ({"model": state, "model_ema": noise}, ".pth", "model"),
        "no-num-batches-tracked": ({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, ".safetensors", None),
        "head-of-another-size": (other_head, ".pt", None),
        "no-head": (no_head, ".pt", None),
        "fp16": ({k: v.half() if v.dtype.is_floating_point else v for k, v in state.items()}, ".safetensors", None),
        "bf16": ({k: v.bfloat16() if v.dtype.is_floating_point else v for k, v in state.items()}, ".pt", None),
    }


def _save(obj, path) -> None:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in obj.items()}, str(path))
    else:
        torch.save(obj, path)


@pytest.mark.parametrize("family", list(SPECS))
def test_every_checkpoint_form_loads_to_identical_embeddings(tmp_path, family):
    spec, state = _source(family)
    expected_by_dtype: dict = {}
    for form, (obj, suffix, key) in _forms(family, state).items():
        if family == "open_clip" and form in {"head-of-another-size", "no-head", "backbone-prefix", "dino-teacher-student"}:
            continue  # a CLIP checkpoint has no classifier head to lose or resize
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(form)
        if dtype not in expected_by_dtype:  # the same weights, rounded as the file rounds them, as a plain state dict
            reference = tmp_path / f"reference-{dtype}.pt"
            torch.save({k: v.to(dtype).float() if dtype and v.dtype.is_floating_point else v for k, v in state.items()}, reference)
            expected_by_dtype[dtype] = _embed(spec, reference)[0]
        expected = expected_by_dtype[dtype]
        path = tmp_path / f"{form}{suffix}"
        _save(obj, path)
        got, fit = _embed({**spec, "checkpoint_key": key}, path)
        assert torch.equal(got, expected), f"{family}/{form}: embeddings differ"
        assert fit is not None
        if form == "lightning":
            assert fit["container"] == "state_dict" and fit["stripped_prefix"] == "model."
        if form == "ema-beside":
            assert fit["container"] == "state_dict_ema"
        if form == "ema-beside-chosen":
            assert fit["container"] == "model"
        if form == "dino-teacher-student":
            assert fit["container"] == "teacher" and fit["stripped_prefix"] == "backbone."
        if form == "mae-model-with-decoder":
            # timm's ViT filter drops an MAE mask_token itself; the decoder is ours to set aside
            assert "decoder_embed.weight" in fit["ignored_not_in_encoder"]["examples"]
        if form == "no-num-batches-tracked" and any(k.endswith("num_batches_tracked") for k in state):
            assert fit["filled_construction_buffers"]["count"] > 0
        if form in {"fp16", "bf16"}:
            assert fit["cast_from"] == {form.replace("fp", "float").replace("bf", "bfloat"): len([v for v in state.values() if v.dtype.is_floating_point]) - len(_head_keys(family, state))}
        if form == "head-of-another-size":
            assert fit["dropped_head"]["count"] == len(_head_keys(family, state)) > 0


def test_the_embedding_table_records_what_was_done(tmp_path, image_folder):
    from vlmprobe.datasets import make_manifest
    from vlmprobe.embed import embed_manifest
    from vlmprobe.formats.embeddings import read_embeddings

    spec, state = _source("timm")
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {f"model.{k}": v.half() if v.dtype.is_floating_point else v for k, v in state.items()}}, path)
    manifest = tmp_path / "m.parquet"
    make_manifest("folder", {"kind": "imagefolder", "root": str(image_folder)}, 0, 0.2, 5, manifest, tmp_path / "d", tmp_path)
    out = tmp_path / "e.parquet"
    embed_manifest(manifest, "m", {**spec, "pretrained": str(path)}, out, device="cpu", batch_size=8, num_workers=0)
    fit = read_embeddings(out).metadata["checkpoint_fit"]
    assert fit["container"] == "state_dict" and fit["stripped_prefix"] == "model." and fit["cast_from"]["float16"] > 0
    assert fit["dropped_head"]["count"] == 2


def test_a_checkpoint_of_a_deeper_architecture_names_it(tmp_path):
    import timm

    deeper = timm.create_model("resnet34", num_classes=10)
    path = tmp_path / "resnet34.pth"
    torch.save({"state_dict": deeper.state_dict()}, path)
    with pytest.raises(VlmprobeError) as error:
        _embed({"family": "timm", "name": "resnet18", "image_size": 32}, path)
    text = str(error.value)
    assert "unexpected" in text and "layer1.2" in text, text
    assert "resnet34" in text, text  # the architecture whose keys fit, computed offline


def test_a_checkpoint_of_a_shallower_architecture_names_it(tmp_path):
    import torchvision

    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(VlmprobeError) as error:
        _embed({"family": "torchvision", "name": "resnet34", "image_size": 32}, path)
    text = str(error.value)
    assert "missing" in text and "layer1.2" in text and "'resnet18'" in text, text


def test_wrong_shapes_are_named_with_both_shapes(tmp_path):
    spec, state = _source("timm")
    state["conv_stem.weight"] = torch.zeros(3, 3, 1, 1)
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(VlmprobeError) as error:
        _embed(spec, path)
    text = str(error.value)
    assert "shape mismatch" in text and "conv_stem.weight" in text and "[3, 3, 1, 1]" in text, text


def test_shapes_that_all_match_never_suggest_renaming(tmp_path):
    """A partial checkpoint of the right architecture: a learned tensor missing, every shape matching."""
    spec, state = _source("timm")
    del state["bn1.running_var"]
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(VlmprobeError) as error:
        _embed(spec, path)
    text = str(error.value)
    assert "bn1.running_var" in text and "missing" in text
    assert "set the model's `name`" not in text and "every shape that both have matches" in text, text


def test_a_wrong_checkpoint_key_names_what_is_there(tmp_path):
    spec, state = _source("timm")
    path = tmp_path / "c.pth"
    torch.save({"model": state, "optimizer": {}}, path)
    with pytest.raises(VlmprobeError, match=r"no 'ema'.*\['model', 'optimizer'\].*checkpoint_key"):
        _embed({**spec, "checkpoint_key": "ema"}, path)
    assert set(load_state_dict(path)) == set(state)


def test_an_unusual_container_loads_by_its_checkpoint_key(tmp_path):
    spec, state = _source("timm")
    path = tmp_path / "run.pth"
    torch.save({"checkpoint": {"weights": state}, "config": {"lr": 0.1}}, path)
    with pytest.raises(VlmprobeError, match="checkpoint_key"):
        _embed(spec, path)  # no entry it knows: the message names the key that chooses one
    expected, _ = _embed(spec, _saved(tmp_path / "plain.pt", state))
    got, fit = _embed({**spec, "checkpoint_key": "checkpoint.weights"}, path)
    assert torch.equal(got, expected) and fit["container"] == "checkpoint.weights"


def _saved(path, state):
    torch.save(state, path)
    return path
