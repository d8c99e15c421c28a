"""Faults: jobs killed with SIGKILL resume, and resumed results equal an uninterrupted run's.

To stop a job *in the middle* deterministically, one image (in manifest order, after two finished
chunks) is replaced by a named pipe: the job blocks reading it with its earlier chunks saved, and is
killed there. Afterwards the image is put back and the job re-run.

What the user types after Snakemake itself was killed (kill -9, a dropped login session): Snakemake
keeps its lock, so ``snakemake --unlock`` once (Snakemake says so), then the usual command; the killed
job's output is absent (atomic writers) and ``rerun-incomplete`` in profiles/default covers a kill
between the rename and Snakemake's bookkeeping. When only a job is killed (SLURM time limit, OOM) the
next run, or Snakemake's own retry, just resumes.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support import REPO, TINY_VIT
from support.spine import CHUNK, spine_config, spine_folder
from support.workflow import files_under, offline_env, snakemake, start_snakemake

from vlmprobe import embed as embed_module
from vlmprobe.datasets import make_manifest
from vlmprobe.embed import embed_manifest, partial_dir
from vlmprobe.formats.embeddings import read_embeddings
from vlmprobe.formats.manifest import read_manifest
from vlmprobe.io import atomic_path, save_figure, write_json, write_parquet, write_text


def chunk_files(out: Path) -> list[Path]:
    return sorted(partial_dir(out).glob("rows-*.npy")) if partial_dir(out).exists() else []


class BlockedImage:
    """Swap the image at manifest row ``row`` for a named pipe: a job reading it blocks until killed."""

    def __init__(self, manifest: Path, row: int):
        self.path = Path(read_manifest(manifest)[0].column("path")[row].as_py())
        self.content = self.path.read_bytes()

    def __enter__(self):
        self.path.unlink()
        os.mkfifo(self.path)
        return self

    def nobody_reading(self) -> bool:
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as error:
            return error.errno == errno.ENXIO
        return False

    def __exit__(self, *exc):
        self.path.unlink()
        self.path.write_bytes(self.content)


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the process ended ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def kill_group(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


# ---------------------------------------------------------------------------------------------- atomic writers


@pytest.mark.parametrize(
    "writer",
    [
        lambda path: write_json(path, {"ok": float("nan")}),  # refused by allow_nan=False mid-write
        lambda path: write_text(path, object()),  # type: ignore[arg-type]
        lambda path: write_parquet(path, "not a table"),
    ],
    ids=["json", "text", "parquet"],
)
def test_a_failing_writer_leaves_neither_output_nor_temporary_file(tmp_path, writer):
    target = tmp_path / "out" / "result.file"
    with pytest.raises(Exception):
        writer(target)
    assert not target.parent.exists() or list(target.parent.iterdir()) == []


def test_an_interrupted_write_keeps_the_previous_complete_file(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"accuracy": 0.9})
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text('{"accur')
            raise KeyboardInterrupt  # as a SIGINT/SIGTERM would, mid-write
    assert target.read_text() == '{\n  "accuracy": 0.9\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_figures_are_written_atomically_and_reproducibly(tmp_path):
    import matplotlib.pyplot as plt

    paths = []
    for name in ("a.png", "b.png"):
        figure, axes = plt.subplots(figsize=(2, 2))
        axes.plot([0, 1], [1, 0])
        save_figure(tmp_path / name, figure)
        paths.append(tmp_path / name)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_every_writer_in_the_package_goes_through_an_atomic_path():
    """Outputs are written to ``tmp`` (from vlmprobe.io.atomic_path) or through vlmprobe.io's writers."""
    import re

    # a call with arguments (polars' write_csv() without a path returns text)
    writes = re.compile(r"\.(savefig|save|write_table|write_parquet|write_csv|to_csv|to_parquet|write_text|write_bytes)\((?!\))|np\.savez?\(|torch\.save\(|open\([^)]*['\"][wa]")
    allowed = {
        # generated dataset images, re-written on every run of the manifest job and decoded before the manifest is written
        "src/vlmprobe/datasets/synthetic_cxr/__init__.py": re.compile(r"\.save\(path, format=\"PNG\"\)"),
        # arrays handed to worker processes in a private tempfile.mkdtemp() folder, never an output
        "src/vlmprobe/umap/workers.py": re.compile(r"np\.save\((scratch|folder) /"),
    }
    offenders = []
    for path in sorted((REPO / "src").rglob("*.py")) + sorted((REPO / "scripts").rglob("*.py")):
        relative = path.relative_to(REPO).as_posix()
        if relative == "src/vlmprobe/io.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#")[0]
            if not writes.search(code) or "tmp" in code or code.strip().startswith(("\"", "'")):
                continue
            if relative in allowed and allowed[relative].search(code):
                continue
            offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, "writes outside vlmprobe.io / atomic_path:\n" + "\n".join(offenders)


# ---------------------------------------------------------------------------------------------- embedding resume (package)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """A manifest of 16 images and its uninterrupted embedding table (tiny ViT, 4 images per chunk)."""
    root = tmp_path_factory.mktemp("resume")
    manifest = root / "manifest.parquet"
    make_manifest("alpha", {"kind": "imagefolder", "root": str(spine_folder(root / "data"))}, 0, 0.2, 5, manifest, root / "d", root)
    reference = root / "reference.parquet"
    embed_manifest(manifest, "vit", TINY_VIT, reference, device="cpu", batch_size=CHUNK, num_workers=0, chunk_images=CHUNK)
    assert not partial_dir(reference).exists()  # removed once the table is written
    return root, manifest, reference


def embed_args(manifest: Path, out: Path) -> dict:
    return dict(manifest_path=str(manifest), model_id="vit", spec=TINY_VIT, out_path=str(out), device="cpu",
                batch_size=CHUNK, num_workers=0, chunk_images=CHUNK)


def test_embedding_killed_with_sigkill_resumes_to_the_identical_table(embedded, tmp_path, caplog):
    root, manifest, reference = embedded
    out = tmp_path / "vit.parquet"
    code = f"from vlmprobe.embed import embed_manifest; embed_manifest(**{embed_args(manifest, out)!r})"
    with BlockedImage(manifest, row=2 * CHUNK + 1) as blocked:
        process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: len(chunk_files(out)) == 2, process, "two saved chunks")
        finally:
            kill_group(process)
        assert blocked.nobody_reading()  # the job really is dead
    assert not out.exists()
    assert [p.name for p in chunk_files(out)] == ["rows-0000000000-0000000004.npy", "rows-0000000004-0000000008.npy"]
    with caplog.at_level(logging.INFO, logger="vlmprobe"):
        embed_manifest(**embed_args(manifest, out))
    assert "resuming: 8 of 16 images" in caplog.text
    assert out.read_bytes() == reference.read_bytes()
    assert not partial_dir(out).exists()


def _interrupted(manifest: Path, out: Path, after_batches: int, monkeypatch) -> None:
    """Run the embedding until ``after_batches`` batches are done, then fail as a crash would."""
    real = embed_module.embed_batches

    def crashing(*args, **kwargs):
        for number, batch in enumerate(real(*args, **kwargs)):
            if number == after_batches:
                raise MemoryError("simulated crash")
            yield batch

    monkeypatch.setattr(embed_module, "embed_batches", crashing)
    with pytest.raises(MemoryError):
        embed_manifest(**embed_args(manifest, out))
    monkeypatch.setattr(embed_module, "embed_batches", real)
    assert not out.exists() and len(chunk_files(out)) == after_batches


def test_a_damaged_chunk_is_recomputed_not_trusted(embedded, tmp_path, monkeypatch, caplog):
    _, manifest, reference = embedded
    out = tmp_path / "vit.parquet"
    _interrupted(manifest, out, 3, monkeypatch)
    chunk_files(out)[1].write_bytes(b"\x93NUMPY garbage")  # e.g. a disk error
    with caplog.at_level(logging.INFO, logger="vlmprobe"):
        embed_manifest(**embed_args(manifest, out))
    assert "unusable" in caplog.text and "resuming: 4 of 16 images" in caplog.text
    assert out.read_bytes() == reference.read_bytes()


def test_chunks_from_other_settings_are_discarded(embedded, tmp_path, monkeypatch, caplog):
    _, manifest, reference = embedded
    out = tmp_path / "vit.parquet"
    _interrupted(manifest, out, 2, monkeypatch)
    np.save(chunk_files(out)[0], np.full((CHUNK, 64), 7.0, np.float32))  # would be visible in the result if reused
    args = {**embed_args(manifest, out), "spec": {**TINY_VIT, "image_size": 32}}  # the model changed meanwhile
    with caplog.at_level(logging.INFO, logger="vlmprobe"):
        embed_manifest(**args)
    assert "discarding partial embeddings" in caplog.text and "resuming" not in caplog.text
    other = tmp_path / "fresh.parquet"
    embed_manifest(**{**args, "out_path": str(other)})
    assert out.read_bytes() == other.read_bytes()


# ---------------------------------------------------------------------------------------------- kill -9 under Snakemake


def restore_upstream(workdir: Path, reference: Path, keep=("manifests", "checks")) -> None:
    """Put finished upstream outputs back (mtimes kept), so that a run goes straight to the job under test."""
    for name in keep:
        shutil.copytree(reference / name, workdir / "results" / name, copy_function=shutil.copy2)


@pytest.mark.workflow
def test_snakemake_killed_during_embedding_resumes_to_identical_results(spine_workdir):
    workdir = spine_workdir
    results, reference = workdir / "results", workdir / "reference"
    restore_upstream(workdir, reference, keep=("manifests", "checks", "pixels"))
    out = results / "embeddings" / "alpha" / "vit.parquet"
    # The job reads its pixels from the pixel cache, not the image files, so it is held after its second chunk by
    # a hook of scripts/embed.py instead: the kill lands mid-embedding, not wherever a 16-image job happens to be.
    process = start_snakemake(workdir, env=offline_env() | {"VLMPROBE_TEST_HOLD_AFTER_CHUNKS": "2"})
    try:
        wait_for(lambda: len(chunk_files(out)) == 2, process, "the embedding job's first two chunks")
    finally:
        kill_group(process)  # Snakemake and its job, as a cluster or a dropped session would
    assert len(chunk_files(out)) == 2 and not out.exists()

    snakemake(workdir, "--unlock")  # Snakemake's lock outlives kill -9; its message says to do this
    snakemake(workdir)
    assert "resuming: 8 of 16 images" in (workdir / "logs" / "embed" / "alpha" / "vit.log").read_text()
    assert not partial_dir(out).exists()
    finished, expected = files_under(results), files_under(reference)
    assert sorted(finished) == sorted(expected)
    different = [name for name in expected if finished[name] != expected[name]]
    assert not different, different


def safetensors_content(path: Path) -> tuple[dict, dict]:
    """Metadata and every tensor's dtype, shape and raw bytes (bitwise, not approximately)."""
    import torch
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        tensors = {}
        for name in handle.keys():
            tensor = handle.get_tensor(name)
            tensors[name] = (str(tensor.dtype), tuple(tensor.shape), tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return handle.metadata() or {}, tensors


def without_timings(value):
    """A result with its measured durations and resume bookkeeping removed (they differ from run to run)."""
    if isinstance(value, dict):
        return {
            key: without_timings(item)
            for key, item in value.items()
            if not (key.endswith(("_s", "seconds", "time_min")) or key == "resumed_after_epochs")
        }
    if isinstance(value, list):
        return [without_timings(item) for item in value]
    return value


@pytest.mark.workflow
def test_snakemake_killed_during_finetuning_resumes_from_its_last_checkpoint(spine_workdir):
    import json

    import pyarrow.parquet as pq
    import torch

    if not any("rule finetune:" in path.read_text() for path in (REPO / "workflow" / "rules").glob("*.smk")):
        pytest.skip("no `finetune` rule in the workflow (issue 4)")
    workdir = spine_workdir
    study = {
        "enabled": True, "datasets": ["alpha"], "zero_shot": {"enabled": False}, "linear_probe": {"enabled": False},
        "bootstrap": {"n_resamples": 0},
        "finetune": {"models": ["vit"], "epochs": 2, "patience": 2, "batch_size": 4, "num_workers": 0, "progress": False},
    }
    config = spine_config(workdir, {"vit": TINY_VIT}, name="finetune.yaml", linear_probe={"enabled": False}, multilabel=study).name
    target = "results/finetune/alpha/vit/finetune.json"  # the job's own outputs; metrics are computed from its predictions
    results, spine, reference = workdir / "results", workdir / "reference", workdir / "reference-finetune"
    shutil.rmtree(reference, ignore_errors=True)
    restore_upstream(workdir, spine)  # the same dataset and model spec: the manifest and model check carry over
    snakemake(workdir, target, config=config)
    results.rename(reference)
    restore_upstream(workdir, spine)
    finetuned = results / "finetune" / "alpha" / "vit"
    last = finetuned / "resume" / "last.pt"

    # the job holds after epoch 1's checkpoint (a hook of scripts/finetune.py): the kill lands mid-training,
    # not wherever the second epoch (tens of milliseconds here) happens to be when the poll sees the file
    process = start_snakemake(workdir, target, config=config, env=offline_env() | {"VLMPROBE_TEST_HOLD_AFTER_EPOCH": "1"})
    try:
        wait_for(last.exists, process, "the first epoch's checkpoint")
    finally:
        kill_group(process)
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 1  # killed in the middle of training
    assert not (finetuned / "encoder.safetensors").exists()

    snakemake(workdir, "--unlock", config=config)
    snakemake(workdir, target, config=config)
    log = (workdir / "logs" / "finetune" / "alpha" / "vit.log").read_text()
    assert "resuming vit from" in log and "after epoch 1" in log
    assert not last.parent.exists()
    expected = reference / "finetune" / "alpha" / "vit"
    # Compared by content, bit for bit: a safetensors file's metadata order (hence its bytes, and the sha256
    # the embedding table records of the encoder file) is reproducible only when written with
    # vlmprobe.io.write_safetensors (test_determinism.py), which the fine-tuning writers do not use yet.
    for name in ("encoder.safetensors", "head.safetensors"):
        assert safetensors_content(finetuned / name) == safetensors_content(expected / name), name
    table, expected_table = (read_embeddings(d / "embeddings.parquet") for d in (finetuned, expected))
    assert table.sample_ids == expected_table.sample_ids and table.matrix.tobytes() == expected_table.matrix.tobytes()
    ignore = {"checkpoint_sha256"}
    assert {k: v for k, v in table.metadata.items() if k not in ignore} == {k: v for k, v in expected_table.metadata.items() if k not in ignore}
    info, expected_info = (json.loads((d / "finetune.json").read_text()) for d in (finetuned, expected))
    assert info["resumed_after_epochs"] == [1] and expected_info["resumed_after_epochs"] == []
    assert without_timings(info) == without_timings(expected_info)
    predictions = "multilabel/alpha/vit/ft.predictions.parquet"
    assert pq.read_table(results / predictions).equals(pq.read_table(reference / predictions))  # values, not timing metadata
