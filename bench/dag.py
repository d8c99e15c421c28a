"""How long Snakemake takes to plan a large study: dry run and no-op re-run of 20 models x 10 datasets.

No job does real work: the bench writes a study configuration into a scratch directory, times
``snakemake -n`` there (nothing exists yet: the whole DAG is planned), then creates every output
as an empty file, lets ``snakemake --touch`` order their modification times, and times a plain
re-run, which must find nothing to do. The default config.yaml (3 models x 2 datasets) is timed
the same way as the baseline (interpreter start, workflow parsing, configuration validation are
most of it), and the ratios show what the larger DAG itself costs.

Goals on the 2-core development machine: dry run under 10 s, no-op re-run under 5 s.

    python bench/dag.py [--models 20] [--datasets 10] [--keep DIR]

The last line reads ``dag: <jobs> jobs, dry run <s> s, no-op <s> s``.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"

# Model specs that the configuration schema accepts and that need no weights; the bench never
# runs them, it only needs distinct names and valid specs.
MODEL_TEMPLATES = [
    {"family": "pixels", "image_size": 32},
    {"family": "open_clip", "name": "vlmprobe-vit-tiny", "pretrained": None},
    {"family": "timm", "name": "resnet18", "pretrained": False, "image_size": 64},
]
DATASET_TEMPLATES = [
    {"kind": "digits"},
    {"kind": "synthetic-cxr", "n_images": 600, "image_size": 128},
]


def study_config(n_models: int, n_datasets: int) -> dict:
    """The repository's default configuration grown to ``n_models`` x ``n_datasets``.

    The default models and datasets come first under their own names (other sections of the
    configuration refer to them, e.g. which models get heatmaps); generated ones fill the rest.
    """
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["models"] = grow(config["models"], n_models, "model", MODEL_TEMPLATES)
    config["datasets"] = grow(config["datasets"], n_datasets, "dataset", DATASET_TEMPLATES)
    return config


def grow(entries: dict, n: int, prefix: str, templates: list[dict]) -> dict:
    grown = dict(list(entries.items())[:n])
    index = 0
    while len(grown) < n:
        grown[f"{prefix}{index:02d}"] = copy.deepcopy(templates[index % len(templates)])
        index += 1
    return grown


CPU_SECONDS: dict[str, float] = {}
"""CPU time (user + system) of the last timed runs by label: on a busy machine wall time inflates, this does not."""


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def snakemake(workdir: Path, *args: str) -> tuple[float, str]:
    """Run Snakemake on the repository's workflow in ``workdir``; return (seconds, output)."""
    command = [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(SNAKEFILE),
        "--directory", str(workdir),
        "--configfile", str(workdir / "config.yaml"),
        "--cores", "1",
        *args,
    ]  # fmt: skip
    cpu_before = children_cpu()
    start = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    CPU_SECONDS[args[0] if args else "run"] = children_cpu() - cpu_before
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed in {workdir}:\n{output[-3000:]}")
    return seconds, output


def job_count(dry_run_output: str) -> int:
    match = re.search(r"^total\s+(\d+)\s*$", dry_run_output, flags=re.MULTILINE)
    if not match:
        raise SystemExit("could not find the job count ('total N') in the dry run's output")
    return int(match.group(1))


def create_outputs(workdir: Path) -> None:
    """Create every output of the planned DAG, empty (in a child process: the API changes directory)."""
    subprocess.run([sys.executable, __file__, "--create-outputs", str(workdir)], check=True)


def create_outputs_here(workdir: Path) -> None:
    """Plan the DAG through Snakemake's API (which knows directory() outputs) and create each output."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        ResourceSettings,
    )

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[workdir / "config.yaml"]),
            snakefile=SNAKEFILE,
            workdir=workdir,
        )
        workflow_api.dag(dag_settings=DAGSettings())
        workflow = workflow_api._workflow  # the DAG itself is not public API
        workflow._prepare_dag(forceall=False, ignore_incomplete=True, lock_warn_only=True)
        workflow._build_dag()
        for job in workflow.dag.jobs:
            for output in job.output:
                path = workdir / str(output)
                if output.is_directory:
                    path.mkdir(parents=True, exist_ok=True)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()


def measure(workdir: Path, config: dict) -> tuple[int, float, float, float, float]:
    """(jobs, dry-run seconds, no-op seconds, dry-run CPU seconds, no-op CPU seconds) for one
    study configuration in an empty ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    dry_seconds, output = snakemake(workdir, "--dry-run")
    dry_cpu = CPU_SECONDS["--dry-run"]
    jobs = job_count(output)
    create_outputs(workdir)
    # Give the files their DAG order of modification times; writes no provenance records, which
    # only makes the re-run skip the params/input/software-env comparisons it has nothing for.
    snakemake(workdir, "--touch", "--quiet", "all")
    noop_seconds, output = snakemake(workdir)
    if "Nothing to be done" not in output:
        raise SystemExit(f"the re-run was not a no-op:\n{output[-3000:]}")
    return jobs, dry_seconds, noop_seconds, dry_cpu, CPU_SECONDS["run"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--datasets", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (default: a temporary one)")
    parser.add_argument("--create-outputs", type=Path, help=argparse.SUPPRESS)  # internal, see create_outputs()
    args = parser.parse_args()
    if args.create_outputs:
        create_outputs_here(args.create_outputs.resolve())
        return

    root = args.keep or Path(tempfile.mkdtemp(prefix="vlmprobe-dag-bench-"))
    try:
        default = yaml.safe_load((REPO / "config.yaml").read_text())
        base_jobs, base_dry, base_noop, _, _ = measure(root / "baseline", default)
        print(
            f"baseline (the default config.yaml, {len(default['models'])} models x {len(default['datasets'])} datasets): "
            f"{base_jobs} jobs, dry run {base_dry:.2f} s, no-op {base_noop:.2f} s"
        )
        jobs, dry, noop, dry_cpu, noop_cpu = measure(root / "study", study_config(args.models, args.datasets))
        print(f"study ({args.models} models x {args.datasets} datasets): {jobs} jobs")
        print(f"dry run: {dry:.2f} s ({dry / base_dry:.1f}x baseline, goal < 10 s), CPU {dry_cpu:.2f} s")
        print(f"no-op re-run: {noop:.2f} s ({noop / base_noop:.1f}x baseline, goal < 5 s), CPU {noop_cpu:.2f} s")
        print(f"load average during the bench: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"dag: {jobs} jobs, dry run {dry:.2f} s, no-op {noop:.2f} s")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
