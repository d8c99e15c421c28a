"""Running the repository's workflow from tests: the one Snakemake launcher and the one config builder.

Every run uses the repository's Snakefile in a temporary working directory, as a user would:
``python -m snakemake --snakefile REPO/Snakefile --directory WORKDIR --configfile WORKDIR/config.yaml --cores 2 ...``
(profiles/default applies); results land under ``WORKDIR/results``, logs under ``WORKDIR/logs``.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from . import REPO

# Runs never reach the network (models are tiny or local files) and draw figures without a display.
OFFLINE = {"HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}


def write_config(
    workdir: Path,
    datasets: dict | None = None,
    models: dict | None = None,
    *,
    base: dict | None = None,
    name: str = "config.yaml",
    **sections,
) -> Path:
    """Write a config as YAML to ``workdir/name`` and return its path.

    It starts from ``base`` (a whole config, e.g. a study preset), by default from a tiny one
    (``seed: 0``, ``embedding: {batch_size: 16, num_workers: 0}``); ``datasets``, ``models`` and
    every keyword section (``umap={...}``) then replace that block whole.
    """
    if base is None:
        config = {"seed": 0, "datasets": {}, "models": {}, "embedding": {"batch_size": 16, "num_workers": 0}}
    else:
        config = copy.deepcopy(base)
    if datasets is not None:
        config["datasets"] = datasets
    if models is not None:
        config["models"] = models
    config.update(sections)
    path = workdir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_command(workdir: Path, *args: str, config: str | Path = "config.yaml", cores: int | None = 2) -> list[str]:
    """The command line of a run in ``workdir`` with ``config`` (relative to ``workdir``, or absolute)."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    command += ["--configfile", str(workdir / config)]
    if cores is not None:
        command += ["--cores", str(cores)]
    return [*command, *args]


def offline_env() -> dict[str, str]:
    return {**os.environ, **OFFLINE}


def snakemake(
    workdir: Path,
    *args: str,
    config: str | Path = "config.yaml",
    cores: int | None = 2,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run the workflow in ``workdir`` to the end; ``env`` is the whole environment (default: this one, offline).

    With ``check``, a failed run raises an AssertionError holding the tails of Snakemake's output and of the job logs.
    """
    command = snakemake_command(workdir, *args, config=config, cores=cores)
    result = subprocess.run(command, cwd=workdir, env=env or offline_env(), capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        logs = "\n".join(f"--- {log}\n{log.read_text(errors='replace')[-2000:]}" for log in sorted((workdir / "logs").rglob("*.log")))
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({result.returncode}) in {workdir}:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}\n{logs[-6000:]}"
        )
    return result


def start_snakemake(
    workdir: Path,
    *args: str,
    config: str | Path = "config.yaml",
    cores: int | None = 2,
    env: dict[str, str] | None = None,
    **popen_options,
) -> subprocess.Popen:
    """Start the same run in the background; by default in its own process group (one signal reaches Snakemake
    and all of its jobs) with its output discarded. ``popen_options`` go to :class:`subprocess.Popen`."""
    options = {"start_new_session": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL} | popen_options
    return subprocess.Popen(snakemake_command(workdir, *args, config=config, cores=cores), cwd=workdir, env=env or offline_env(), **options)


def planned_outputs(workdir: Path, *args: str, config: str | Path = "config.yaml") -> set[str]:
    """Outputs a dry run would (re)generate."""
    result = snakemake(workdir, "--dry-run", *args, config=config)
    text = result.stdout + result.stderr
    outputs = set()
    for match in re.finditer(r"^\s+output: (.+)$", text, flags=re.MULTILINE):
        outputs.update(part.strip() for part in match.group(1).split(","))
    return outputs


def files_under(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` by relative path, with its bytes: two runs compared byte for byte."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}
