"""Writes ``omegaconf_checkpoint.tar``: a research checkpoint container as CXR-CLIP's trainer saves it
(kakaobrain/cxr-clip cxrclip/trainer.py:161-171: ``{"model", "optimizer", "scheduler", "config", "epoch",
"train_loss"}``), with real OmegaConf objects in ``config`` (as Hydra hands them over), an
``argparse.Namespace`` (DeiT / DINO / MAE style ``args``) and numpy scalars (``best_acc``) beside it.

Needs ``omegaconf`` (not a vlmprobe dependency: the test reads the file without it). Run once:
``python -m venv --system-site-packages /tmp/oc && /tmp/oc/bin/pip install omegaconf==2.4.0 &&
/tmp/oc/bin/python tests/data/make_omegaconf_checkpoint.py``. The tensors are fixed (arange), so the test
knows them without the file.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

config = OmegaConf.create(
    {
        "model": {"image_encoder": {"source": "huggingface", "name": "microsoft/swin-tiny-patch4-window7-224", "model_type": "swin"},
                  "projection_head": {"name": "linear", "dropout": 0.1, "proj_dim": 512}},
        "transform": {"valid": {"Resize": {"size": 224}, "CenterCrop": {"size": 224}}, "train": {"RandomResizedCrop": {"scale": [0.8, 1.1]}}},
        "base": {"image_size": 224, "seed": 1234},
    }
)
weights = {"layer.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "layer.bias": torch.arange(2, dtype=torch.float32)}
torch.save(
    {
        "model": weights,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
        "scheduler": {"last_epoch": 3},
        "config": {"model": config.model, "transform": config.transform, "base": dict(config.base)},
        "epoch": 4,
        "train_loss": np.float32(0.25),
        "args": argparse.Namespace(lr=1e-4, model="swin_tiny", data_path=Path("/data")),
        "best_acc": np.float64(0.875),
    },
    Path(__file__).with_name("omegaconf_checkpoint.tar"),
)
