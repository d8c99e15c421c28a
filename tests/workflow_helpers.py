"""Running the real workflow from tests: in a temporary working directory, on a tiny config."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO, write_image


def make_folder_dataset(root: Path, classes: int, per_class: int, offset: int = 0) -> Path:
    for c in range(classes):
        for i in range(per_class):
            write_image(root / f"class{c}" / f"{i:02d}.png", (offset + 60 * c + 3 * i) % 256)
    return root


def tiny_config(workdir: Path, datasets: dict, models: dict, **stages) -> Path:
    config = {"seed": 0, "datasets": datasets, "models": models, "embedding": {"batch_size": 16, "num_workers": 0}}
    config.update(stages)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def planned_outputs(workdir: Path, *args: str) -> set[str]:
    """Outputs a dry run would (re)generate."""
    result = snakemake(workdir, "--dry-run", *args)
    text = result.stdout + result.stderr
    outputs = set()
    for match in re.finditer(r"^\s+output: (.+)$", text, flags=re.MULTILINE):
        outputs.update(part.strip() for part in match.group(1).split(","))
    return outputs
