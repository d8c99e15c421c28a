from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from support import PIXELS, TINY_VIT

from vlmprobe.datasets import make_manifest
from vlmprobe.embed import embed_manifest
from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.embeddings import aligned, read_embeddings, write_embeddings


def test_round_trip_keeps_values_ids_and_provenance(tmp_path):
    matrix = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
    path = tmp_path / "e.parquet"
    write_embeddings(path, [f"s{i}" for i in range(5)], matrix, {"model_id": "m", "spec": {"family": "pixels"}})
    table = read_embeddings(path, expected_spec={"family": "pixels"})
    assert table.sample_ids == [f"s{i}" for i in range(5)]
    assert table.matrix.dtype == np.float32 and np.array_equal(table.matrix, matrix)
    assert table.metadata["embed_dim"] == 7 and table.metadata["model_id"] == "m"
    schema = pq.read_schema(path)
    assert str(schema.field("embedding").type) == "fixed_size_list<element: float>[7]"
    assert [p.name for p in tmp_path.iterdir()] == ["e.parquet"]  # no temporary file left behind


def test_spec_mismatch_and_non_finite_values_are_refused(tmp_path):
    path = tmp_path / "e.parquet"
    write_embeddings(path, ["a", "b"], np.ones((2, 3), np.float32), {"spec": {"family": "pixels", "image_size": 16}})
    with pytest.raises(VlmprobeError, match="config.yaml now says"):
        read_embeddings(path, expected_spec={"family": "pixels", "image_size": 32})
    bad = np.ones((2, 3), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(VlmprobeError, match="NaN or Inf"):
        write_embeddings(tmp_path / "nan.parquet", ["a", "b"], bad, {})
    assert not (tmp_path / "nan.parquet").exists()


@pytest.mark.parametrize("spec, dim", [(PIXELS, 256), (TINY_VIT, 64)])
def test_embed_manifest_end_to_end(tmp_path, image_folder, spec, dim):
    manifest = tmp_path / "m.parquet"
    make_manifest("folder", {"kind": "imagefolder", "root": str(image_folder)}, 0, 0.2, 5, manifest, tmp_path / "d", tmp_path)
    out = tmp_path / "emb.parquet"
    embed_manifest(manifest, "m", spec, out, device="cpu", batch_size=8, num_workers=0)
    frame, matrix, manifest_meta, meta = aligned(manifest, out, expected_spec=spec)
    assert matrix.shape == (36, dim) and np.isfinite(matrix).all()
    assert meta["device"] == "cpu" and meta["precision"] == "fp32" and "torch" in meta["versions"]
    assert meta["preprocess"]["transform"]
    # workers decode in parallel yet the table is identical, row for row
    again = tmp_path / "emb2.parquet"
    embed_manifest(manifest, "m", spec, again, device="cpu", batch_size=5, num_workers=2)
    assert np.allclose(read_embeddings(again).matrix, matrix, atol=1e-5)


def test_embedding_table_of_another_manifest_is_refused(tmp_path, image_folder):
    manifest = tmp_path / "m.parquet"
    make_manifest("folder", {"kind": "imagefolder", "root": str(image_folder)}, 0, 0.2, 5, manifest, tmp_path / "d", tmp_path)
    out = tmp_path / "e.parquet"
    write_embeddings(out, ["x", "y"], np.ones((2, 3), np.float32), {"spec": PIXELS})
    with pytest.raises(VlmprobeError, match="does not match manifest"):
        aligned(manifest, out)
