"""Untrusted files: a checkpoint (or array file) that would run code when unpickled is refused, and
the code never runs, on every route by which vlmprobe reads weights."""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from support import REPO, TINY_VIT

from vlmprobe.datasets import make_manifest
from vlmprobe.errors import VlmprobeError
from vlmprobe.models import check_spec, load_encoder
from vlmprobe.models.checkpoints import load_state_dict, verify_checkpoint


class Payload:
    """Unpickling this calls ``os.system`` to create a marker file (what an attacker would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    path = tmp_path / "code-ran"
    # the payload is real: plain pickle runs it (so the refusals below are meaningful)
    pickle.loads(pickle.dumps(Payload(path), protocol=2))
    assert path.exists()
    path.unlink()
    return path


def plant(path: Path, marker: Path, how: str) -> Path:
    """Write a checkpoint at ``path`` that would run the payload, in one of the ways they arrive."""
    payload = Payload(marker)
    weights = {"weight": torch.zeros(2, 2)}
    if how == "pickle-protocol-2":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    elif how == "pickle-protocol-4":
        path.write_bytes(pickle.dumps(payload, protocol=4))
    elif how == "torch-zip":  # torch.save of a dict with the payload among real tensors
        torch.save({**weights, "extra": payload}, path)
    elif how == "nested-state-dict":  # hidden one level down, where unwrapping would look
        torch.save({"state_dict": weights, "optimizer": {"hook": payload}}, path)
    elif how == "legacy-torch":  # torch's pre-zip format
        torch.save({**weights, "extra": payload}, path, _use_new_zipfile_serialization=False)
    else:
        raise ValueError(how)
    return path


HOW = ["pickle-protocol-2", "pickle-protocol-4", "torch-zip", "nested-state-dict", "legacy-torch"]


@pytest.mark.parametrize("how", HOW)
def test_load_state_dict_refuses_a_code_running_pickle(tmp_path, marker, how):
    path = plant(tmp_path / "weights.pt", marker, how)
    for read in (load_state_dict, verify_checkpoint):
        with pytest.raises(VlmprobeError) as error:
            read(path)
        text = str(error.value)
        assert "weights.pt" in text and "refuses to load" in text and "safetensors" in text, text
        assert "weights_only=False" not in text  # never advise the unsafe way out
    assert not marker.exists()


def _family_spec(family: str, path: Path) -> dict:
    return {
        "open_clip": {"family": "open_clip", "name": "vlmprobe-vit-tiny", "pretrained": str(path), "preprocess_like": None,
                      "preprocess": {"mean": [0.5] * 3, "std": [0.25] * 3}},
        "timm": {"family": "timm", "name": "resnet18", "pretrained": str(path), "image_size": 32},
        "torchvision": {"family": "torchvision", "name": "resnet18", "pretrained": str(path), "image_size": 32},
        # the authors' releases (llava reads safetensors shards only: no pickle route)
        "flair": {"family": "flair", "name": "resnet_v1", "pretrained": str(path)},
        "cxr_clip": {"family": "cxr_clip", "name": "swin_tiny", "pretrained": str(path)},
        "conch": {"family": "conch", "name": "conch_ViT-B-16", "pretrained": str(path)},
    }[family]


@pytest.mark.parametrize("family", ["open_clip", "timm", "torchvision", "flair", "cxr_clip", "conch"])
@pytest.mark.parametrize("how", ["pickle-protocol-2", "torch-zip"])
def test_every_family_checkpoint_route_refuses_it(tmp_path, marker, family, how):
    path = plant(tmp_path / f"{family}.pth", marker, how)
    spec = {k: v for k, v in _family_spec(family, path).items() if v is not None}
    with pytest.raises(VlmprobeError, match="refuses to load") as error:
        check_spec("downloaded", spec)  # the offline check on the submitting node
    assert f"{family}.pth" in str(error.value)
    with pytest.raises(VlmprobeError, match="refuses to load"):
        load_encoder("downloaded", spec)  # and building the model directly
    assert not marker.exists()


def test_open_clip_local_dir_route_refuses_it(tmp_path, marker):
    from vlmprobe.models.families.open_clip_family import CONFIG_DIR

    folder = tmp_path / "staged"
    folder.mkdir()
    config = {"model_cfg": json.loads((CONFIG_DIR / "vlmprobe-vit-tiny.json").read_text()), "preprocess_cfg": {}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    plant(folder / "open_clip_pytorch_model.bin", marker, "torch-zip")
    spec = {"family": "open_clip", "name": f"local-dir:{folder}"}
    for call in (lambda: check_spec("staged", spec), lambda: load_encoder("staged", spec)):
        with pytest.raises(VlmprobeError, match=r"open_clip_pytorch_model\.bin.*refuses to load"):
            call()
    assert not marker.exists()


def test_torchvision_download_route_refuses_it(tmp_path, marker, monkeypatch):
    """torchvision reads downloads with torch.hub's weights_only=False default; vlmprobe overrides it.

    The download is simulated by a mirror that serves the payload (and a hash check that let it through).
    """

    def compromised_download(url, destination, hash_prefix=None, progress=True):
        plant(Path(destination), marker, "torch-zip")

    monkeypatch.setattr(torch.hub, "download_url_to_file", compromised_download)
    hub_dir = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        with pytest.raises(VlmprobeError, match=r"resnet18-.*\.pth.*refuses to load.*posix\.system|refuses to load") as error:
            load_encoder("tv", {"family": "torchvision", "name": "resnet18", "pretrained": "IMAGENET1K_V1", "image_size": 32})
    finally:
        torch.hub.set_dir(hub_dir)
    assert "download.pytorch.org" in str(error.value)
    assert not marker.exists()


def test_the_model_libraries_default_to_weights_only():
    """open_clip and timm read their own downloads; guard against a release that changes their defaults."""
    import inspect

    import open_clip.factory
    import timm.models._helpers

    for function in (open_clip.factory.load_checkpoint, open_clip.factory.load_state_dict, timm.models._helpers.load_state_dict):
        assert inspect.signature(function).parameters["weights_only"].default is True, function


def test_safe_checkpoints_still_load(tmp_path):
    """The refusals are not blanket: a plain state dict and safetensors load on every route."""
    model = load_encoder("m", TINY_VIT).extras["open_clip_model"]
    from safetensors.torch import save_file

    plain, safe = tmp_path / "plain.pt", tmp_path / "safe.safetensors"
    torch.save({"state_dict": model.state_dict()}, plain)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, safe)
    for path in (plain, safe):
        assert verify_checkpoint(path) == len(model.state_dict())
        load_encoder("m", _family_spec("open_clip", path))


def test_npz_dataset_with_a_pickled_object_array_is_refused(tmp_path, marker):
    path = tmp_path / "medmnist.npz"
    labels = np.empty(20, dtype=object)
    labels[:] = [Payload(marker)] * 20
    np.savez(path, train_images=np.zeros((20, 8, 8), np.uint8), train_labels=labels)  # object arrays are pickled
    with pytest.raises(VlmprobeError, match=r"medmnist\.npz.*plain numeric arrays"):
        make_manifest("mm", {"kind": "npz", "path": str(path)}, 0, 0.2, 5, tmp_path / "m.parquet", tmp_path / "d", tmp_path)
    assert not marker.exists() and not (tmp_path / "m.parquet").exists()
    with zipfile.ZipFile(path) as archive:  # the payload really is in there
        assert b"system" in archive.read("train_labels.npy")


def test_no_code_path_unpickles():
    """Every reader in the package is a safe one: no weights_only=False, no pickle.load, no allow_pickle=True."""
    unsafe = re.compile(r"weights_only\s*=\s*False|pickle\.loads?\(|allow_pickle\s*=\s*True|torch\.load\((?![^)]*weights_only=True)")
    offenders = []
    for path in sorted((REPO / "src").rglob("*.py")) + sorted((REPO / "scripts").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if unsafe.search(line) and not line.lstrip().startswith("#"):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
