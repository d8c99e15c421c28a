"""Atomic writers: every output appears complete under its final name or not at all.

A job killed half-way (kill -9, SLURM time limit, full disk) leaves only a hidden temporary
file next to the target, never a truncated file that a later run would trust.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` if the block succeeds.

    The temporary file keeps the target's suffix so that writers which infer the format from the
    extension (matplotlib, numpy) still work. ``fsync=False`` skips flushing to disk before the
    rename: a killed process still leaves nothing partial, only a machine crash could; it is for
    bulk scratch files regenerated on every run (thousands of fsyncs cost tens of seconds).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give outputs the permissions any other new file would get, so
        # collaborators sharing a results folder on a cluster can read them
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; it replaces ``target`` (and whatever was there) if the block succeeds.

    For outputs that are a folder of files (the explorer's thumbnail sheets): a killed job leaves a hidden
    folder beside the target, never a half-filled one under the target's name.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield scratch
        # mkdtemp's folder is private; results are as readable as any other new folder
        scratch.chmod(0o777 & ~_current_umask())
        if target.exists():
            shutil.rmtree(target)
        os.replace(scratch, target)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


def write_json(target: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as pretty, key-sorted JSON, atomically (sorted keys keep reruns byte-identical)."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_text(target: str | os.PathLike[str], text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_parquet(target: str | os.PathLike[str], table: Any) -> None:
    """Write a pyarrow Table or polars DataFrame atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = table.to_arrow()
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_parquet(path: str | os.PathLike[str], metadata_key: bytes, what: str) -> tuple[Any, dict[str, Any]]:
    """(table, its JSON schema metadata under ``metadata_key``) of a Parquet file this project wrote;
    a missing or unreadable file is one clear error naming ``what`` it should have been."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vlmprobe.errors import VlmprobeError

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as error:
        raise VlmprobeError(f"{what} {str(path)!r} are missing or unreadable: {error}.", "delete the file and re-run the workflow.") from error
    return table, json.loads((table.schema.metadata or {}).get(metadata_key, b"{}"))


def write_safetensors(target: str | os.PathLike[str], tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> None:
    """Write torch tensors or numpy arrays as ``.safetensors``, atomically and byte-reproducibly.

    safetensors keeps the metadata in a hash map, so its key order -- and the file's bytes, and any
    sha256 recorded of them -- change from process to process; the header is re-written here with
    sorted keys (the tensor data and their offsets are untouched; the header stays padded to 8 bytes
    as the format requires).
    """
    import numpy as np

    if all(isinstance(value, np.ndarray) for value in tensors.values()):
        from safetensors.numpy import save

        blob = save({name: np.ascontiguousarray(value) for name, value in tensors.items()}, metadata=metadata)
    else:
        from safetensors.torch import save

        blob = save({name: tensor.contiguous() for name, tensor in tensors.items()}, metadata=metadata)
    length = int.from_bytes(blob[:8], "little")
    header = json.dumps(json.loads(blob[8 : 8 + length]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    with atomic_path(target) as tmp:
        tmp.write_bytes(len(header).to_bytes(8, "little") + header + blob[8 + length :])


def save_figure(target: str | os.PathLike[str], figure: Any, **kwargs: Any) -> None:
    """Save a matplotlib figure atomically and close it. Metadata is dropped so reruns are byte-identical.

    Text that leaves the canvas (a clipped title or legend label) is logged as a warning naming the file."""
    import matplotlib.pyplot as plt

    if kwargs.get("bbox_inches") != "tight":  # a tight box grows to hold every text
        from vlmprobe.figures import texts_outside

        for text in texts_outside(figure):
            logging.getLogger(__name__).warning("%s: text leaves the figure: %s", target, text)

    kwargs.setdefault("dpi", 120)
    kwargs.setdefault("metadata", {"Software": None})
    with atomic_path(target) as tmp:
        figure.savefig(tmp, **kwargs)
    plt.close(figure)
