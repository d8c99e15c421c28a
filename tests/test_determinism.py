"""Same seed and config -> byte-identical results on CPU.

The spine runs twice from scratch in the same working directory (so absolute image paths in the
manifest are the same) and every file under results/ -- manifests, embedding tables, probe JSON,
summary tables and figures, the UMAP grid at n_neighbors 3 and 5 -- must be identical byte for byte. What can differ on a GPU is written
up in the README's robustness notes (autocast, non-deterministic kernels).
"""

from __future__ import annotations

import pytest
from support.workflow import files_under, snakemake


@pytest.mark.workflow
def test_two_runs_with_the_same_seed_give_identical_bytes(spine_workdir):
    """A second run from scratch (no results, no Snakemake metadata) of the run in `reference/`."""
    snakemake(spine_workdir)
    produced, expected = files_under(spine_workdir / "results"), files_under(spine_workdir / "reference")
    assert sorted(produced) == sorted(expected)
    assert {"linear_probe/alpha/vit.json", "summary/linear_probe.parquet", "embeddings/alpha/vit.parquet"} <= set(produced)
    # The UMAP grid at n_neighbors 3 and 5 (tables and figures), where umap.UMAP itself is not reproducible.
    assert {"umap/alpha/vit.parquet", "umap/alpha/vit_quality.parquet", "umap/alpha/vit.png", "umap/alpha/models.png"} <= set(produced)
    different = [name for name in expected if produced[name] != expected[name]]
    assert not different, f"not byte-identical: {different}"


def test_safetensors_files_are_byte_reproducible(tmp_path):
    """safetensors orders the metadata by a hash seeded anew for every file; vlmprobe.io.write_safetensors sorts it."""
    import numpy as np
    import torch
    from safetensors import safe_open
    from safetensors.torch import save

    from vlmprobe.io import write_safetensors

    metadata = {key: str(i) for i, key in enumerate("abcdefgh")}
    tensors = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3)}
    assert len({save(tensors, metadata=metadata) for _ in range(5)}) > 1  # the library's own bytes vary
    written = set()
    for i in range(5):
        write_safetensors(tmp_path / f"t{i}.safetensors", tensors, metadata)
        write_safetensors(tmp_path / f"n{i}.safetensors", {"w": np.eye(3, dtype=np.float32)}, metadata)
        written.add(((tmp_path / f"t{i}.safetensors").read_bytes(), (tmp_path / f"n{i}.safetensors").read_bytes()))
    assert len(written) == 1
    with safe_open(str(tmp_path / "t0.safetensors"), framework="pt") as handle:
        assert handle.metadata() == metadata
        assert handle.get_tensor("w").tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
