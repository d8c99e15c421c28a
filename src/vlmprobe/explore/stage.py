"""The explore stage's jobs: a dataset's thumbnails, one (dataset, model) page, and the index of all pages."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def thumbnails_for_dataset(manifest_path: str | Path, out_dir: str | Path, size: int, quality: int) -> None:
    from vlmprobe.explore.thumbnails import write_thumbnails
    from vlmprobe.formats.manifest import read_manifest

    table, _ = read_manifest(manifest_path)
    write_thumbnails(table.column("path").to_pylist(), table.column("sample_id").to_pylist(), out_dir, size=size, quality=quality)


def explorer_page(
    manifest_path: str | Path,
    coords_path: str | Path,
    thumbnails_dir: str | Path,
    page_path: str | Path,
    *,
    n_neighbors: int,
    min_dist: float,
    title: str,
    predictions_path: str | Path | None = None,
    nuisances: Sequence[str] = (),
    group: str | None = None,
    index_path: str | Path | None = None,
) -> dict[str, Any]:
    """Write one explorer page; return its index entry (points and the cell drawn)."""
    import polars as pl

    from vlmprobe.explore.data import page_data
    from vlmprobe.explore.page import render_page
    from vlmprobe.explore.thumbnails import read_thumbnail_index
    from vlmprobe.formats.manifest import read_manifest
    from vlmprobe.formats.umap_grid import nearest_cell, read_cell
    from vlmprobe.io import write_text

    table, meta = read_manifest(manifest_path)
    k, m = nearest_cell(coords_path, n_neighbors, min_dist)
    notes = []
    if (k, m) != (n_neighbors, min_dist):
        notes.append(f"The configured cell (n_neighbors = {n_neighbors}, min_dist = {min_dist:g}) is not in the grid; the nearest computed cell is drawn.")
        log.info("explore: drawing the nearest cell n_neighbors=%d, min_dist=%g", k, m)
    ids, xy = read_cell(coords_path, k, m)
    predictions = None
    if predictions_path is not None:
        from vlmprobe.formats.predictions import read_predictions, read_probe_predictions

        if meta.get("multilabel"):
            predictions = read_predictions(predictions_path)
            notes.append("Linear probe: the multi-label study's linear probe (lp) on the test split; 'every label right' when its set of labels is the true one.")
        else:
            predictions = read_probe_predictions(predictions_path)
            notes.append("Linear probe: the prediction of the model fitted on all training rows, on the test split (the other rows were not tested).")
    else:
        notes.append("No linear-probe colouring: no per-sample linear-probe predictions for this (dataset, model) (the probe is switched off or does not run here).")
    page_path = Path(page_path)
    prefix = Path(os.path.relpath(thumbnails_dir, page_path.parent)).as_posix() + "/"
    data = page_data(
        pl.from_arrow(table), meta.get("classes", []), bool(meta.get("multilabel")), ids, xy,
        thumbnails=read_thumbnail_index(thumbnails_dir), thumbnail_prefix=prefix, predictions=predictions,
        nuisances=nuisances, group=group, title=title, cell={"n_neighbors": k, "min_dist": m}, notes=notes,
    )  # fmt: skip
    index_href = Path(os.path.relpath(index_path, page_path.parent)).as_posix() if index_path else None
    write_text(page_path, render_page(data, index_href=index_href))
    return {"page": str(page_path), "n_points": len(ids), "cell": {"n_neighbors": k, "min_dist": m}}


def explorer_index(entries: Sequence[dict[str, Any]], index_path: str | Path) -> None:
    """``entries``: ``dataset``, ``model``, ``page``; the points and cell are read back from each page."""
    from vlmprobe.explore.page import render_index
    from vlmprobe.io import write_text

    write_text(index_path, render_index([{**entry, **page_summary(entry["page"])} for entry in entries], index_path))


def page_summary(page_path: str | Path) -> dict[str, Any]:
    """The point count and cell of a written page (from its inline data)."""
    import json
    import re

    text = Path(page_path).read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="explore-data">(.*?)</script>', text, flags=re.DOTALL)
    if not match:
        from vlmprobe.errors import VlmprobeError

        raise VlmprobeError(f"Explorer page {str(page_path)!r} holds no data.", "delete it and re-run the workflow.")
    data = json.loads(match.group(1))
    return {"n_points": data["n"], "cell": data["cell"]}
