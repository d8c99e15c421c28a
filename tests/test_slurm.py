"""The workflow on a real SLURM cluster, through Snakemake's own SLURM executor and profiles/slurm.

A single-node cluster (munged + slurmctld + slurmd from Debian's slurm-wlm and munge, started by
the ``cluster`` fixture as root, see support/slurm_cluster.py) runs the tiny study. The test checks that
the remote jobs really went through ``sbatch`` (the controller's job records: batch jobs named by
the executor's run id, one per embedding with a GPU request on the GPU partition, the CPU fan-out
grouped) and that every result table equals the one from a local run.

Skipped, with the reason, where the packages are missing or the daemons cannot start (not root).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from support import REPO
from support.rule_files import workflow_rules
from support.slurm_cluster import SlurmCluster, unavailable_reason
from support.tiny_study import tiny_study_config
from support.workflow import snakemake

pytestmark = pytest.mark.slurm

# Keys of result JSON/metadata that describe the run rather than the result: where and when it
# ran, and the solver's iteration counts, which follow the floating-point summation order of the
# BLAS threads a job happens to get (the fitted numbers agree to 1e-6 all the same).
RUN_SPECIFIC = re.compile(
    r"time|host|date|duration|elapsed|created|started|finished|pid|device|threads|path|dir|version|solver_info|iterations",
    re.I,
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    # Short path: the munge socket path must fit in a Unix socket address (108 bytes).
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm", numbered=True))
    try:
        cluster.start()
    except (RuntimeError, OSError) as error:
        cluster.stop()
        pytest.skip(f"could not start the SLURM test cluster: {error}")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def slurm_run(cluster, shared_dataset, tmp_path_factory):
    """The tiny study run through profiles/slurm on the test cluster; returns its directory."""
    workdir = tmp_path_factory.mktemp("tiny-slurm")
    tiny_study_config(workdir, shared_dataset)
    env = cluster.env
    env["VLMPROBE_SLURM_GPU_PARTITION"] = cluster.gpu_partition
    for name in ("VLMPROBE_SLURM_ACCOUNT", "VLMPROBE_SLURM_PARTITION"):
        env.pop(name, None)
    snakemake(
        workdir,
        "--workflow-profile", str(REPO / "profiles" / "slurm"),
        # No slurmdbd on the test cluster: query job states with squeue (MinJobAge keeps finished
        # jobs visible), and poll quickly instead of the production 40 s.
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "1",
        "--slurm-keep-successful-logs",
        "--latency-wait", "5",
        "--retries", "0",
        "--jobs", "4",
        # The most CPUs one job may ask for: the test node's.
        cores=cluster.cpus,
        env=env,
        timeout=420,
    )  # fmt: skip
    return workdir


def memory_mb(value: str) -> float:
    """SLURM's memory field ('4100M', '4G', '1T') in MB."""
    units = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}
    return float(value[:-1]) * units[value[-1]] if value[-1] in units else float(value)


def job_rule(record: dict[str, str]) -> str:
    """The rule (or group) name the executor put into the job's comment: ``rule_<name>[_wildcards_...]``."""
    comment = record.get("Comment", "")
    match = re.match(r"rule_(.+?)(?:_wildcards_.*)?$", comment)
    return match.group(1) if match else comment


def test_workflow_runs_on_slurm_like_locally(cluster, slurm_run, request):
    """One test (not two) so that pytest-xdist runs the cluster and the SLURM run on one worker."""
    check_jobs_went_through_sbatch(cluster, slurm_run)
    # Asked for here, not as an argument: a session fixture would run the local study before the cluster fixture can skip.
    check_outputs_equal(slurm_run, request.getfixturevalue("local_run"))


def check_jobs_went_through_sbatch(cluster: SlurmCluster, slurm_run: Path) -> None:
    records = cluster.jobs()
    assert records, "the controller has no job records: nothing was submitted"
    problems = [
        f"job {r['JobId']} ({r.get('Comment')}): state {r['JobState']}, batch {r['BatchFlag']}"
        for r in records
        if r["JobState"] != "COMPLETED" or r["BatchFlag"] != "1"
    ]
    assert not problems, "\n".join(problems)
    # The executor names every job of one run by its run id.
    assert len({r["JobName"] for r in records}) == 1, {r["JobName"] for r in records}

    rules = [job_rule(r) for r in records]
    local_rules = {name for name, rule in workflow_rules().items() if rule["local"]}
    assert local_rules, "the workflow declares no local rules"
    assert not local_rules & set(rules), f"local rules were submitted: {sorted(local_rules & set(rules))}"

    embeds = [r for r in records if job_rule(r) == "embed"]
    assert len(embeds) == 2, f"one embedding job per model expected, got {rules}"
    for record in embeds:
        # The GPU request path: --gpus=1 on the partition chosen by VLMPROBE_SLURM_GPU_PARTITION.
        assert "gpu:1" in record.get("TresPerJob", ""), record
        assert record["Partition"] == cluster.gpu_partition, record
        assert memory_mb(record["MinMemoryNode"]) >= 4096, record  # sized by the workflow, not the default
        assert record["TimeLimit"] not in ("UNLIMITED", ""), record

    fan_out = [r for r in records if job_rule(r) != "embed"]
    assert fan_out, f"no CPU fan-out job was submitted: {rules}"
    for record in fan_out:
        assert "gpu" not in record.get("TresPerJob", "").lower(), record
        assert record["Partition"] == cluster.partition, record
    # The CPU fan-out travels in groups: fewer SLURM jobs than analyses (each wrote its rule log).
    grouped = {name for name, rule in workflow_rules().items() if rule["group"] == "analysis"}
    analyses = [log for name in grouped for log in (slurm_run / "logs" / name).rglob("*.log")]
    assert len(analyses) >= 2, f"the tiny study ran too few grouped analyses to tell: {analyses}"
    assert len(fan_out) < len(analyses), f"{len(fan_out)} SLURM jobs for {len(analyses)} analyses: not grouped"
    # Ungrouped CPU jobs are the per-dataset preparations only (one job per dataset, not per model or analysis):
    # decoding a dataset into its pixel cache, which every embedding job of that geometry waits for, and the
    # explorer's thumbnail sheets; each runs on a CPU node so that no GPU job decodes images.
    per_dataset = {"pixel_cache", "explore_thumbnails"}
    ungrouped = [job_rule(r) for r in fan_out if not job_rule(r).startswith("analysis") and job_rule(r) not in per_dataset]
    assert not ungrouped, f"ungrouped CPU jobs: {rules}"


def check_outputs_equal(slurm_run: Path, local: Path) -> None:
    local_files = sorted(p.relative_to(local) for p in (local / "results").rglob("*") if p.is_file())
    slurm_files = sorted(p.relative_to(slurm_run) for p in (slurm_run / "results").rglob("*") if p.is_file())
    local_results = [p for p in local_files if p.parts[1] != "datasets"]
    assert local_results, "the local run produced no results"
    assert [p for p in slurm_files if p.parts[1] != "datasets"] == local_results

    differences: list[str] = []
    compared = 0
    for relative in local_results:
        if relative.suffix == ".parquet":
            differences += compare_tables(local / relative, slurm_run / relative, str(relative))
            compared += 1
        elif relative.suffix == ".json":
            differences += compare_values(
                json.loads((local / relative).read_text()), json.loads((slurm_run / relative).read_text()), str(relative)
            )
            compared += 1
        elif relative.suffix in (".csv", ".md", ".tsv"):
            # Rendered tables of the same numbers: identical text.
            if (local / relative).read_text() != (slurm_run / relative).read_text():
                differences.append(f"{relative}: text differs")
            compared += 1
    assert compared >= 3, f"too few tables compared: {local_results}"
    assert not differences, "SLURM and local results differ:\n" + "\n".join(differences[:40])


def compare_tables(a: Path, b: Path, where: str) -> list[str]:
    left, right = pq.read_table(a), pq.read_table(b)
    if left.schema.names != right.schema.names or left.num_rows != right.num_rows:
        return [f"{where}: columns {left.schema.names} x {left.num_rows} vs {right.schema.names} x {right.num_rows}"]
    differences = []
    for name in left.schema.names:
        differences += compare_values(left.column(name).to_pylist(), right.column(name).to_pylist(), f"{where}:{name}")
    for key in set(left.schema.metadata or {}) | set(right.schema.metadata or {}):
        if key.startswith(b"vlmprobe"):
            differences += compare_values(
                json.loads((left.schema.metadata or {}).get(key, b"null")),
                json.loads((right.schema.metadata or {}).get(key, b"null")),
                f"{where}:metadata",
            )
    return differences


def compare_values(a, b, where: str) -> list[str]:
    """Differences between two JSON-like values; floats to 1e-6 relative, run-specific keys skipped."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            if RUN_SPECIFIC.search(str(key)):
                continue
            if key not in a or key not in b:
                out.append(f"{where}.{key}: only in {'SLURM' if key in b else 'local'} result")
            else:
                out += compare_values(a[key], b[key], f"{where}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} vs {len(b)}"]
        if a and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in a + b):
            left, right = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
            if not np.allclose(left, right, rtol=1e-6, atol=1e-7, equal_nan=True):
                worst = int(np.nanargmax(np.abs(left - right)))
                return [f"{where}[{worst}]: {left[worst]!r} vs {right[worst]!r}"]
            return []
        out = []
        for index, (x, y) in enumerate(zip(a, b)):
            out += compare_values(x, y, f"{where}[{index}]")
            if len(out) > 5:
                break
        return out
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7):
            return []
        if a != a and b != b:  # both NaN
            return []
        return [f"{where}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]
