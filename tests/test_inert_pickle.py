"""Research checkpoints with objects beside the tensors load as data: an ``argparse.Namespace``, numpy scalars and
real OmegaConf objects (tests/data/omegaconf_checkpoint.tar, written by omegaconf 2.4.0, see the script beside it)
are set aside as inert placeholders and named in ``checkpoint_fit``; a pickle that would call code stays refused."""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from vlmprobe.errors import VlmprobeError
from vlmprobe.models.checkpoints import load_checkpoint_into, load_state_dict, read_checkpoint, verify_checkpoint
from vlmprobe.models.inert_pickle import Inert, set_aside

OMEGACONF_CHECKPOINT = Path(__file__).parent / "data" / "omegaconf_checkpoint.tar"


def test_a_real_omegaconf_checkpoint_loads_its_tensors_and_sets_the_rest_aside():
    checkpoint = read_checkpoint(OMEGACONF_CHECKPOINT)
    assert torch.equal(checkpoint["model"]["layer.weight"], torch.arange(6, dtype=torch.float32).reshape(2, 3))
    assert checkpoint["epoch"] == 4 and checkpoint["optimizer"]["param_groups"][0]["lr"] == 1e-4  # plain data stays data
    assert isinstance(checkpoint["config"]["model"], Inert) and checkpoint["config"]["model"].global_name == "omegaconf.dictconfig.DictConfig"
    assert checkpoint["args"].state["model"] == "swin_tiny"  # a Namespace's fields, as recorded
    aside = set_aside(checkpoint)
    for name in ("argparse.Namespace", "omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig", "pathlib.PosixPath"):
        assert name in aside
    assert any(name.endswith("multiarray.scalar") for name in aside)  # np.float64 best_acc
    assert set(load_state_dict(OMEGACONF_CHECKPOINT)) == {"layer.weight", "layer.bias"}
    assert verify_checkpoint(OMEGACONF_CHECKPOINT) == 2  # the offline check takes the same route (memory-mapped)


def test_checkpoint_fit_says_what_was_set_aside(tmp_path):
    layer = torch.nn.Linear(3, 2)
    fit = load_checkpoint_into(layer, OMEGACONF_CHECKPOINT, "linear").as_metadata()
    assert torch.equal(layer.bias, torch.tensor([0.0, 1.0]))
    assert fit["container"] == "model" and fit["stripped_prefix"] == "layer."
    assert "omegaconf.dictconfig.DictConfig" in fit["set_aside_objects"] and "argparse.Namespace" in fit["set_aside_objects"]


def test_namespace_and_numpy_entries_written_here_load(tmp_path):
    path = tmp_path / "deit.pth"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=5e-4, epochs=300), "best_acc": np.float64(81.8),
                "epoch": np.int64(299), "mean": np.array([0.5, 0.5])}, path)
    checkpoint = read_checkpoint(path)
    assert set(set_aside(checkpoint)) >= {"argparse.Namespace", "numpy.dtype"}
    assert torch.equal(load_state_dict(path)["w"], torch.ones(2))


class _CallsPopen:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.Popen, (["touch", str(self.marker)],))


class _CallsEval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


class _CallsPartial:
    def __reduce__(self):
        return (functools.partial, (print, "ran"))


class _ForeignTensor(torch.Tensor):
    pass


@pytest.mark.parametrize("payload", ["popen", "eval", "partial", "system", "foreign-tensor"])
def test_a_pickle_that_would_call_code_is_still_refused(tmp_path, payload):
    marker = tmp_path / "code-ran"

    class _CallsSystem:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    objects = {"popen": _CallsPopen(marker), "eval": _CallsEval(), "partial": _CallsPartial(), "system": _CallsSystem()}
    weights = {"w": torch.ones(2)}
    if payload == "foreign-tensor":  # the tensors themselves rebuilt through the pickle's own class
        weights = {"w": torch.ones(2).as_subclass(_ForeignTensor)}
    else:
        weights["extra"] = objects[payload]
    path = tmp_path / "weights.pt"
    torch.save({"model": weights, "args": argparse.Namespace(lr=1.0)}, path)  # beside data that alone would load
    for read in (load_state_dict, verify_checkpoint):
        with pytest.raises(VlmprobeError, match="refuses to load") as error:
            read(path)
        assert "weights_only=False" not in str(error.value)
    assert not marker.exists()
