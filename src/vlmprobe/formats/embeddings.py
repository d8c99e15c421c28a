"""Embedding tables: the cache every analysis reads.

``results/embeddings/{dataset}/{model}.parquet`` holds ``sample_id`` and ``embedding`` (a fixed-size
list of float32) and, under the schema metadata key ``vlmprobe``, the provenance: model id and spec,
checkpoint sha256, preprocessing, embedding dimension, package versions, device and precision.
Reading is zero-copy into one (n, d) float32 matrix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlmprobe.errors import VlmprobeError
from vlmprobe.io import write_parquet

METADATA_KEY = b"vlmprobe"
FORMAT_VERSION = 1
"""Bump when the table layout or the meaning of an embedding changes; a mismatch forces a recompute."""


@dataclass
class EmbeddingTable:
    sample_ids: list[str]
    matrix: np.ndarray
    metadata: dict[str, Any]

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])


def write_embeddings(path: str | Path, sample_ids: list[str], matrix: np.ndarray, metadata: dict[str, Any]) -> None:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(sample_ids):
        raise ValueError(f"embedding matrix {matrix.shape} does not match {len(sample_ids)} sample ids")
    check_finite(matrix, str(path))
    n, dim = matrix.shape
    values = pa.array(matrix.reshape(-1), type=pa.float32())
    embedding = pa.FixedSizeListArray.from_arrays(values, dim)
    metadata = {**metadata, "format_version": FORMAT_VERSION, "embed_dim": dim, "n_samples": n}
    schema = pa.schema([("sample_id", pa.string()), ("embedding", pa.list_(pa.float32(), dim))]).with_metadata(
        {METADATA_KEY: json.dumps(metadata, sort_keys=True, default=str)}
    )
    table = pa.table({"sample_id": pa.array(sample_ids, pa.string()), "embedding": embedding}, schema=schema)
    write_parquet(path, table)


def check_finite(matrix: np.ndarray, where: str) -> None:
    finite = np.isfinite(matrix)
    if not finite.all():
        bad_rows = int((~finite).any(axis=1).sum())
        raise VlmprobeError(
            f"Embedding table {where!r} has NaN or Inf values in {bad_rows} row(s).",
            "delete the table and re-run; if it recurs, embed in float32 (`precision: fp32`) — half precision can overflow.",
        )


def read_embeddings(path: str | Path, expected_spec: dict[str, Any] | None = None) -> EmbeddingTable:
    """Read a table; with ``expected_spec``, refuse one computed from a different model spec."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as error:
        raise VlmprobeError(f"Embedding table {str(path)!r} is missing or unreadable: {error}.", "delete it and re-run the workflow.") from error
    metadata = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
    if metadata.get("format_version") != FORMAT_VERSION:
        raise VlmprobeError(
            f"Embedding table {str(path)!r} has format version {metadata.get('format_version')!r}, this vlmprobe writes {FORMAT_VERSION}.",
            "delete it and re-run the workflow to recompute it.",
        )
    if expected_spec is not None and metadata.get("spec") != expected_spec:
        raise VlmprobeError(
            f"Embedding table {str(path)!r} was computed with model spec {metadata.get('spec')} but config.yaml now says {expected_spec}.",
            "re-run snakemake (it recomputes tables whose model settings changed) or delete the table.",
        )
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    matrix = column.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
    check_finite(matrix, str(path))
    return EmbeddingTable(sample_ids=table.column("sample_id").to_pylist(), matrix=matrix, metadata=metadata)


def aligned(manifest_path: str | Path, embedding_path: str | Path, expected_spec: dict[str, Any] | None = None):
    """The manifest (as a polars DataFrame) and the embedding matrix in manifest row order.

    A table whose sample ids differ from the manifest's (the dataset changed after embedding) is
    refused rather than silently joined.
    """
    import polars as pl

    from vlmprobe.formats.manifest import read_manifest

    manifest_table, manifest_meta = read_manifest(manifest_path)
    embeddings = read_embeddings(embedding_path, expected_spec)
    manifest = pl.from_arrow(manifest_table)
    ids = manifest["sample_id"].to_list()
    if ids == embeddings.sample_ids:
        return manifest, embeddings.matrix, manifest_meta, embeddings.metadata
    position = {sample_id: row for row, sample_id in enumerate(embeddings.sample_ids)}
    missing = [sample_id for sample_id in ids if sample_id not in position]
    if missing or len(position) != len(ids):
        raise VlmprobeError(
            f"Embedding table {str(embedding_path)!r} does not match manifest {str(manifest_path)!r} "
            f"({len(missing)} manifest samples missing, {len(position)} rows vs {len(ids)} samples).",
            "delete the embedding table and re-run so it is recomputed from the current manifest.",
        )
    order = np.fromiter((position[sample_id] for sample_id in ids), dtype=np.int64, count=len(ids))
    return manifest, embeddings.matrix[order], manifest_meta, embeddings.metadata
