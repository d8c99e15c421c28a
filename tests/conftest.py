"""Pytest's hooks (markers) and the fixtures several test files share: generated datasets and runs, all offline.

Helpers and constants (the Snakemake launcher, the config builder, tiny model specs) live in the
``support`` package beside this file; tests import them with ``from support import ...``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from support import TINY_VIT
from support.images import write_image
from support.spine import SPINE_UMAP, spine_config, spine_folder
from support.tiny_study import tiny_study_config, write_dataset
from support.workflow import snakemake

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: needs a real single-node SLURM cluster (started by the test)")
    config.addinivalue_line("markers", "workflow: runs Snakemake end to end")
    config.addinivalue_line("markers", "gpu: needs CUDA (skipped with the reason elsewhere); `bash bench/gpu_check.sh` runs them on a GPU node")
    config.addinivalue_line("markers", "slow: takes more than ~10 s (every workflow and slurm test, and long training); skip with -m 'not slow'")


# Fixtures that run the workflow end to end (once per session, but a minute or more for the test that starts them).
WORKFLOW_FIXTURES = {"spine_reference", "local_run"}


def pytest_collection_modifyitems(config, items):
    """Every test that runs Snakemake end to end (marked `workflow`, or through a fixture) or starts a cluster is slow."""
    for item in items:
        runs_workflow = item.get_closest_marker("workflow") or WORKFLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
        if runs_workflow or item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three classes of 12 grayscale images each, brightness-coded so a probe can learn them."""
    root = tmp_path / "folder"
    for class_index, name in enumerate(["benign", "malignant", "normal"]):
        for i in range(12):
            write_image(root / name / f"img{i:02d}.png", 40 + 80 * class_index + i)
    return root


# ---------------------------------------------------------------------------------------------- the spine (faults, determinism)


@pytest.fixture(scope="session")
def spine_reference(tmp_path_factory) -> Path:
    """A working directory holding one uninterrupted run of the spine (tiny ViT, 16 images, a small UMAP grid) in `reference/`.

    Made once per test session and shared by test_faults.py and test_determinism.py (the runs dominate
    these tests' time).
    """
    workdir = tmp_path_factory.mktemp("spine")
    spine_folder(workdir / "data" / "alpha")
    spine_config(workdir, {"vit": TINY_VIT}, umap=SPINE_UMAP)
    snakemake(workdir)
    (workdir / "results").rename(workdir / "reference")
    return workdir


@pytest.fixture
def spine_workdir(spine_reference) -> Path:
    """The spine's working directory as every user finds it: a clean slate, no `results/`, no Snakemake metadata."""
    for leftover in ("results", ".snakemake", "logs"):
        shutil.rmtree(spine_reference / leftover, ignore_errors=True)
    return spine_reference


# ---------------------------------------------------------------------------------------------- the tiny study (SLURM, report)


@pytest.fixture(scope="session")
def shared_dataset(tmp_path_factory) -> Path:
    """The tiny study's images, once per session: every run reads the same file, so the manifests
    (which record image paths) of two runs can be compared value for value."""
    path = tmp_path_factory.getbasetemp() / "tiny-data" / "bars.npz"
    write_dataset(path)
    return path


@pytest.fixture(scope="session")
def local_run(shared_dataset, tmp_path_factory) -> Path:
    """The tiny study run locally (profiles/default), once per session; returns its directory."""
    workdir = tmp_path_factory.getbasetemp() / "tiny-local"
    tiny_study_config(workdir, shared_dataset)
    snakemake(workdir)
    return workdir
