"""Image embedding: manifest + model spec -> embedding table.

Decoding and resizing bound throughput on most machines, so images are decoded and preprocessed in
DataLoader worker processes while the main process keeps the model fed; on CUDA the forward pass
runs under autocast (bf16 where supported, else fp16) with pinned host memory.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.datasets.manifest import read_manifest
from vlmprobe.errors import VlmprobeError
from vlmprobe.images import load_image
from vlmprobe.store import write_embeddings

log = logging.getLogger(__name__)


class ManifestImages:
    """A map-style dataset over manifest paths, applying the model's own preprocessing."""

    def __init__(self, paths: list[str], preprocess):
        self.paths = paths
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        return self.preprocess(load_image(self.paths[index]))


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VlmprobeError(f"Device {device!r} was requested but CUDA is not available here.", "set `embedding: device: auto` or run on a GPU node.")
    return device


def autocast_dtype(device: str, precision: str):
    import torch

    if not device.startswith("cuda") or precision == "fp32":
        return None
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in ("vlmprobe", "torch", "torchvision", "open_clip_torch", "timm", "numpy", "pyarrow"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            pass
    return versions


def embed_images(encoder, paths: list[str], device: str, batch_size: int, num_workers: int, precision: str, progress: bool = True) -> np.ndarray:
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    loader = DataLoader(
        ManifestImages(paths, encoder.preprocess),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.startswith("cuda"),
        prefetch_factor=4 if num_workers > 0 else None,
        persistent_workers=False,
    )
    dtype = autocast_dtype(device, precision)
    chunks = []
    encoder.image_module.eval()
    with torch.inference_mode():
        for batch in tqdm(loader, desc=f"embed {encoder.model_id}", unit="batch", disable=not progress, mininterval=5):
            batch = batch.to(device, non_blocking=True)
            if dtype is not None:
                with torch.autocast(device_type="cuda", dtype=dtype):
                    features = encoder.encode_image(batch)
            else:
                features = encoder.encode_image(batch)
            chunks.append(features.float().cpu().numpy())
    return np.concatenate(chunks, axis=0) if chunks else np.zeros((0, encoder.embed_dim), np.float32)


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
) -> None:
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
    matrix = embed_images(encoder, paths, device, batch_size, num_workers, precision)
    seconds = time.perf_counter() - started
    log.info("embedded %d images in %.1f s (%.1f images/s)", len(paths), seconds, len(paths) / max(seconds, 1e-9))
    metadata = {
        "model_id": model_id,
        "spec": spec,
        "family": spec.get("family"),
        "checkpoint_sha256": encoder.checkpoint_sha256,
        "preprocess": encoder.preprocess_info,
        "dataset": manifest_meta.get("dataset"),
        "device": device,
        "precision": "fp32" if autocast_dtype(device, precision) is None else str(autocast_dtype(device, precision)).removeprefix("torch."),
        "batch_size": batch_size,
        "versions": package_versions(),
    }
    write_embeddings(out_path, sample_ids, matrix, metadata)
