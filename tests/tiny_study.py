"""A tiny study for end-to-end runs of the real workflow: 90 synthetic 16x16 images, two models.

The dataset is a MedMNIST-style ``.npz`` (three classes drawn as dark bars in different
orientations plus noise), so the manifest, embedding, probe, UMAP and summary stages all have
real work to do in seconds. The models are the ``pixels`` baseline and a tiny random-initialised
open_clip ViT, which exercises the torch path without weights.

:func:`local_run` builds the study once per test session (shared by the SLURM test, which
compares a cluster run against it, and the report test) under pytest's session temp directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
CLASSES = 3
PER_CLASS = 30
SIZE = 16
DONE = ".tiny-study-complete"


def write_dataset(path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in range(CLASSES):
        for _ in range(PER_CLASS):
            image = rng.normal(200, 20, size=(SIZE, SIZE))
            offset = rng.integers(3, SIZE - 3)
            if label == 0:
                image[offset - 1 : offset + 2, :] -= 120  # horizontal bar
            elif label == 1:
                image[:, offset - 1 : offset + 2] -= 120  # vertical bar
            else:
                for i in range(SIZE):  # diagonal bar
                    image[i, max(0, i - 1) : i + 2] -= 120
            images.append(np.clip(image, 0, 255).astype(np.uint8))
            labels.append(label)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, train_images=np.stack(images), train_labels=np.array(labels, dtype=np.int64))


def shared_dataset(tmp_path_factory) -> Path:
    """The study's images, once per session: every run reads the same file, so the manifests
    (which record image paths) of two runs can be compared value for value."""
    path = tmp_path_factory.getbasetemp() / "tiny-data" / "bars.npz"
    if not path.exists():
        write_dataset(path)
    return path


def write_config(workdir: Path, dataset: Path) -> Path:
    """A config.yaml in ``workdir``, where the Snakefile's ``configfile:`` finds it."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["datasets"] = {
        "bars": {"kind": "npz", "path": str(dataset), "label_names": ["horizontal", "vertical", "diagonal"]}
    }
    config["models"] = {
        "pixels": {"family": "pixels", "image_size": SIZE},
        "vit-tiny": {"family": "open_clip", "name": "vlmprobe-vit-tiny", "pretrained": None},
    }
    config.setdefault("split", {})["n_folds"] = 3
    config["embedding"] = {**config.get("embedding", {}), "device": "cpu", "batch_size": 32}
    # One small UMAP grid: 2 x 1 layouts instead of the poster's 10 x 5.
    config["umap"] = {**config.get("umap", {}), "n_neighbors": [5, 15], "min_dist": [0.5]}
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the repository's workflow in ``workdir``; outputs land under ``workdir/results``."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir), *args]
    return subprocess.run(
        command, cwd=workdir, env=env or dict(os.environ), capture_output=True, text=True, timeout=timeout, check=False
    )


def run_or_fail(workdir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    result = snakemake(workdir, *args, env=env, timeout=timeout)
    if result.returncode != 0:
        logs = "\n".join(
            f"--- {log}\n{log.read_text(errors='replace')[-2000:]}" for log in sorted((workdir / "logs").rglob("*.log"))
        )
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({result.returncode}) in {workdir}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}\n{logs[-6000:]}"
        )
    return result


def local_run(tmp_path_factory) -> Path:
    """The tiny study run locally (profiles/default), once per session; returns its directory."""
    workdir = tmp_path_factory.getbasetemp() / "tiny-local"
    if (workdir / DONE).exists():
        return workdir
    write_config(workdir, shared_dataset(tmp_path_factory))
    run_or_fail(workdir, "--cores", "2")
    (workdir / DONE).touch()
    return workdir
