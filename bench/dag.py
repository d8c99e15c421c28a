"""How long Snakemake takes to plan a large study: dry run and no-op re-run of 20 models x 10 datasets.

No job does real work: the bench writes a study configuration into a scratch directory, times
``snakemake -n`` there (nothing exists yet: the whole DAG is planned), then creates every output
as an empty file, lets ``snakemake --touch`` order their modification times, and times a plain
re-run, which must find nothing to do. A 1 model x 1 dataset study is timed the same way as the
baseline (interpreter start, workflow parsing, configuration validation), and the ratios show
what the DAG itself costs.

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
    """The repository's default configuration with ``n_models`` x ``n_datasets`` entries."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["models"] = {
        f"model{i:02d}": copy.deepcopy(MODEL_TEMPLATES[i % len(MODEL_TEMPLATES)]) for i in range(n_models)
    }
    config["datasets"] = {
        f"dataset{i:02d}": copy.deepcopy(DATASET_TEMPLATES[i % len(DATASET_TEMPLATES)]) for i in range(n_datasets)
    }
    return config


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


def create_outputs(workdir: Path) -> int:
    """Create every output of the planned DAG as an empty file; return how many."""
    _, summary = snakemake(workdir, "--summary")
    created = 0
    for line in summary.splitlines():
        fields = line.split("\t")
        if len(fields) < 5 or fields[0] == "output_file":
            continue
        path = workdir / fields[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        created += 1
    return created


def measure(workdir: Path, n_models: int, n_datasets: int) -> tuple[int, float, float, float, float]:
    """(jobs, dry-run seconds, no-op seconds, dry-run CPU seconds, no-op CPU seconds) for one
    study size in an empty ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(study_config(n_models, n_datasets), sort_keys=False))
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
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="vlmprobe-dag-bench-"))
    try:
        base_jobs, base_dry, base_noop, _, _ = measure(root / "baseline", 1, 1)
        print(f"baseline (1 model x 1 dataset): {base_jobs} jobs, dry run {base_dry:.2f} s, no-op {base_noop:.2f} s")
        jobs, dry, noop, dry_cpu, noop_cpu = measure(root / "study", args.models, args.datasets)
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
