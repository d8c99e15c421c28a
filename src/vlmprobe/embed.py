"""Image embedding: manifest + model spec -> embedding table.

Decoding and resizing bound throughput on most machines, so images are decoded once per geometry into a pixel
cache by their own job (:mod:`vlmprobe.models.pixel_cache`) that every model with that geometry reads, or, where a
model's preprocessing cannot be split exactly, decoded and preprocessed in DataLoader worker processes while the
main process keeps the model fed (the table's ``pixels`` metadata says which, and why); on CUDA the forward pass
runs under autocast (bf16 where supported, else fp16) with pinned host memory.

A job killed half-way (kill -9, SLURM time limit, preempted node) loses at most one chunk: finished
chunks of rows are saved, each atomically, in ``{output}.partial/`` under a key that covers
everything the numbers depend on (model spec, weights, preprocessing, device, precision, batch size,
package versions, the manifest's ids and paths); the re-run job resumes after the last one and the
table equals an uninterrupted run's, because every batch holds the same images as it would have.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.embeddings import FORMAT_VERSION, write_embeddings
from vlmprobe.formats.manifest import read_manifest
from vlmprobe.io import atomic_path, write_json
from vlmprobe.models.encode import embed_batches, embed_cached_batches
from vlmprobe.runtime import autocast_dtype, package_versions, resolve_device

log = logging.getLogger(__name__)


def partial_dir(out_path: str | Path) -> Path:
    """Where a running job keeps its finished chunks: ``{output}.partial/`` (removed once the table is written)."""
    return Path(f"{out_path}.partial")


class ChunkStore:
    """Finished chunks of one embedding job, each an atomically written ``.npy`` of rows [start, stop).

    ``key`` fingerprints everything the numbers depend on; chunks saved under another key (the model,
    its weights, the manifest or the batch size changed) are discarded, never reused.
    """

    KEY_FILE = "key.json"

    def __init__(self, directory: Path, key: str, n_rows: int, dim: int):
        self.directory = directory
        self.key = key
        self.n_rows = n_rows
        self.dim = dim

    def _chunk_path(self, start: int, stop: int) -> Path:
        return self.directory / f"rows-{start:010d}-{stop:010d}.npy"

    def resume(self) -> list[np.ndarray]:
        """The saved chunks covering rows [0, n) contiguously, after dropping anything unusable."""
        key_file = self.directory / self.KEY_FILE
        if self.directory.exists():
            try:
                saved_key = json.loads(key_file.read_text())["key"]
            except (OSError, ValueError, KeyError, TypeError):
                saved_key = None
            if saved_key != self.key:
                log.info("discarding partial embeddings in %s: they were computed with other settings", self.directory)
                shutil.rmtree(self.directory)
        if not self.directory.exists():
            self.directory.mkdir(parents=True)
            write_json(key_file, {"key": self.key, "n_rows": self.n_rows, "dim": self.dim})
            return []
        chunks: list[np.ndarray] = []
        done = 0
        saved = sorted(self.directory.glob("rows-*.npy"))
        for position, path in enumerate(saved):
            try:
                start, stop = (int(part) for part in path.stem.split("-")[1:3])
                if start != done or stop > self.n_rows:
                    raise ValueError(f"rows {start}-{stop} do not follow row {done}")
                matrix = np.load(path, allow_pickle=False)
                if matrix.shape != (stop - start, self.dim) or matrix.dtype != np.float32 or not np.isfinite(matrix).all():
                    raise ValueError(f"unexpected contents {matrix.shape} {matrix.dtype}")
            except (OSError, ValueError) as error:
                log.warning("partial embeddings %s unusable (%s); recomputing from row %d", path.name, error, done)
                for stale in saved[position:]:
                    stale.unlink()
                break
            chunks.append(matrix)
            done = stop
        return chunks

    def add(self, start: int, matrix: np.ndarray) -> None:
        with atomic_path(self._chunk_path(start, start + len(matrix))) as tmp:
            np.save(tmp, np.ascontiguousarray(matrix, dtype=np.float32), allow_pickle=False)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def resume_key(metadata: dict[str, Any], sample_ids: list[str], paths: list[str]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({**metadata, "format_version": FORMAT_VERSION}, sort_keys=True, default=str).encode())
    for sample_id, path in zip(sample_ids, paths):
        digest.update(f"{sample_id}\0{path}\n".encode())
    return digest.hexdigest()


def embed_resumable(
    encoder,
    paths: list[str],
    store: ChunkStore,
    device: str,
    batch_size: int,
    num_workers: int,
    precision: str,
    chunk_images: int,
    pixels: PixelSource | None = None,
    after_chunk: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Embed ``paths`` saving every ``chunk_images`` rows (rounded up to whole batches) to ``store``,
    starting after the chunks a killed run left behind; from the pixel cache in ``pixels`` where it is trusted."""
    chunks = store.resume()
    done = sum(len(chunk) for chunk in chunks)
    if done:
        log.info("resuming: %d of %d images were embedded before the job stopped", done, len(paths))
    # whole batches per chunk: resumed batches hold exactly the images they would have held
    rows_per_chunk = math.ceil(max(1, chunk_images) / batch_size) * batch_size
    pending: list[np.ndarray] = []
    start = done
    if pixels is not None and pixels.cache is not None:
        batches = embed_cached_batches(encoder, pixels.cache, pixels.split, done, device, batch_size, precision)
    else:
        batches = embed_batches(encoder, paths[done:], device, batch_size, num_workers, precision)
    for features in batches:
        pending.append(features)
        if sum(len(part) for part in pending) >= rows_per_chunk:
            chunk = np.concatenate(pending, axis=0)
            store.add(start, chunk)
            chunks.append(chunk)
            start += len(chunk)
            pending = []
            if after_chunk is not None:
                after_chunk(len(chunks))
    if pending:
        chunks.append(np.concatenate(pending, axis=0))
    return np.concatenate(chunks, axis=0) if chunks else np.zeros((0, encoder.embed_dim), np.float32)


@dataclass
class PixelSource:
    """Where the images' pixels come from: a trusted pixel cache, or decoding afresh (``cache`` None), and why."""

    cache: Any
    split: Any
    record: dict[str, Any]
    """What the embedding table's metadata says (``pixels``): the source, the geometry, or the reason for decoding."""


def pixel_source(encoder, pixel_cache: tuple[str, str] | None, sample_ids: list[str], paths: list[str], no_cache_reason: str | None = None) -> PixelSource:
    """The pixel cache (``pixels.npy``, ``index.parquet``) if it holds exactly what this model's own preprocessing
    would make of the manifest's files now; otherwise decoding afresh, with the reason."""
    from vlmprobe.models.pixel_cache import open_cache
    from vlmprobe.models.pixel_split import NotSplittable, planned_split, split_preprocess

    try:
        split = split_preprocess(encoder.preprocess)
    except NotSplittable as error:
        return PixelSource(None, None, {"source": "decoded", "note": f"preprocessing not split exactly: {error}"})
    if pixel_cache is None:
        if no_cache_reason is None:
            planned, no_cache_reason = planned_split(encoder.model_id, encoder.spec)
            if planned is not None:
                no_cache_reason = "no pixel cache was given to this job"
        return PixelSource(None, split, {"source": "decoded", "note": no_cache_reason})
    cache = open_cache(*pixel_cache, split, sample_ids, paths)
    if isinstance(cache, str):
        log.warning("not using the pixel cache: %s; decoding every image afresh", cache)
        return PixelSource(None, split, {"source": "decoded", "note": f"pixel cache not trusted: {cache}"})
    log.info("reading pixels from the pixel cache %s (%s uint8)", pixel_cache[0], "x".join(map(str, cache.pixels.shape)))
    return PixelSource(cache, split, {"source": "cache", "geometry": split.describe(), "cache_key": cache.meta["key"]})


def embed_manifest(
    manifest_path: str | Path,
    model_id: str,
    spec: dict[str, Any],
    out_path: str | Path,
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int | None = None,
    precision: str = "auto",
    seed: int = 0,
    threads: int | None = None,
    chunk_images: int = 2048,
    pixel_cache: tuple[str, str] | None = None,
    no_cache_reason: str | None = None,
    after_chunk: Callable[[int], None] | None = None,
) -> None:
    """Embed every image of the manifest with the model into ``out_path``; from ``pixel_cache`` (its ``.npy`` and
    index) where that cache is trusted, else decoding afresh (``no_cache_reason`` says why no cache was planned).
    ``after_chunk(n)`` runs after the n-th chunk is saved (a test hook)."""
    import torch

    from vlmprobe.models import check_spec, load_encoder

    check_spec(model_id, spec)  # before any data is read or any GPU time is spent
    table, manifest_meta = read_manifest(manifest_path)
    paths = table.column("path").to_pylist()
    sample_ids = table.column("sample_id").to_pylist()
    missing = [p for p in paths[:] if "::" not in p and not os.path.exists(p)]
    if missing:
        raise VlmprobeError(
            f"Manifest {str(manifest_path)!r} names {len(missing)} image(s) that no longer exist, e.g. {missing[:3]}.",
            "restore the files or delete the manifest so it is rebuilt.",
        )
    device = resolve_device(device)
    threads = threads or os.cpu_count() or 1
    if num_workers is None:
        num_workers = min(8, threads - 1)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    started = time.perf_counter()
    encoder = load_encoder(model_id, spec, device)
    log.info("model %s (%s) loaded on %s, %d-D embeddings", model_id, spec.get("family"), device, encoder.embed_dim)
    metadata = {
        "model_id": model_id,
        "spec": spec,
        "family": spec.get("family"),
        "checkpoint_sha256": encoder.checkpoint_sha256,
        "checkpoint_fit": encoder.checkpoint_fit,
        "preprocess": encoder.preprocess_info,
        "dataset": manifest_meta.get("dataset"),
        "device": device,
        "precision": "fp32" if autocast_dtype(device, precision) is None else str(autocast_dtype(device, precision)).removeprefix("torch."),
        "batch_size": batch_size,
        "versions": package_versions(),
    }
    # a cached pixel is the pixel decoding gives, so where the pixels came from is not part of the resume key
    store = ChunkStore(partial_dir(out_path), resume_key(metadata, sample_ids, paths), len(paths), encoder.embed_dim)
    pixels = pixel_source(encoder, pixel_cache, sample_ids, paths, no_cache_reason)
    metadata["pixels"] = pixels.record
    matrix = embed_resumable(encoder, paths, store, device, batch_size, num_workers, precision, chunk_images, pixels, after_chunk)
    seconds = time.perf_counter() - started
    log.info("embedded %d images in %.1f s (%.1f images/s)", len(paths), seconds, len(paths) / max(seconds, 1e-9))
    write_embeddings(out_path, sample_ids, matrix, metadata)
    store.remove()
