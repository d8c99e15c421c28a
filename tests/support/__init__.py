"""Helpers the tests share: where the repository is, tiny offline model specs, and the modules below.

- ``support.workflow``: the one Snakemake launcher and the one config builder
- ``support.images``: small generated images and image folders
- ``support.miniatures``: fabricated copies of the studies' dataset layouts
- ``support.tiny_study``: the 90-image study the SLURM and report tests run
- ``support.spine``: the spine-only config and dataset the fault and determinism tests run
- ``support.synthetic``: synthetic-cxr manifests and a fine-tuning call with test defaults
- ``support.rule_files``: the rule files read as text
- ``support.slurm_cluster``, ``support.headless_chromium``: a throw-away SLURM cluster, a headless browser

Fixtures (shared datasets and runs) live in tests/conftest.py; tests import helpers from here.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

TINY_VIT = {"family": "open_clip", "name": "vlmprobe-vit-tiny", "pretrained": None}
TINY_TIMM_VIT = {"family": "open_clip", "name": "vlmprobe-vit-timm-tiny", "pretrained": None}  # BiomedCLIP-like: timm ViT tower, class-token pooled
TINY_RN = {"family": "open_clip", "name": "vlmprobe-rn-tiny", "pretrained": None}
PIXELS = {"family": "pixels", "image_size": 16}
