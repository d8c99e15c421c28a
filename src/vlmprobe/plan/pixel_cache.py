"""The pixel-cache jobs of the embed stage: one per (dataset, geometry), shared by every model with that geometry.

A model's geometry is the geometric part of its preprocessing (:mod:`vlmprobe.models.pixel_split`), known at plan
time where its family builds the preprocessing from the spec alone
(:meth:`vlmprobe.models.base.ModelFamily.preprocess_without_weights`). Models whose geometry is not known here,
or whose preprocessing does not split exactly, have no cache job: their embedding decodes every image, and its
table's ``pixels`` metadata says why (:attr:`PixelCaches.reasons`). ``embedding: pixel_cache: false`` turns the
caches off.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from vlmprobe.plan.paths import path

GEOMETRY_PATTERN = r"[0-9]+x[0-9]+(-gray)?-[0-9a-f]{10}"
"""The ``{geometry}`` wildcard: ``PixelSplit.name``, e.g. ``224x224-3f2a9c1b7d``."""


@functools.lru_cache(maxsize=256)
def _planned_split(model: str, spec_json: str) -> tuple[Any, str | None]:
    from vlmprobe.models.pixel_split import planned_split

    return planned_split(model, json.loads(spec_json))  # cached: every DAG build plans every model


class PixelCaches:
    """Which models share which pixel cache, the cache jobs and their inputs and params."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.datasets = list(config["datasets"])
        self.enabled = bool(config.get("embedding", {}).get("pixel_cache", True))

    # Planned on first use, not in the constructor: building the transforms imports the model libraries (seconds),
    # which a Snakemake run of one analysis job (a SLURM job, a summary) that never asks for an embedding skips.

    @functools.cached_property
    def _planned(self) -> dict[str, tuple[Any, str | None]]:
        if not self.enabled:
            return {model: (None, "`embedding: pixel_cache: false`") for model in self.config["models"]}
        return {model: _planned_split(model, json.dumps(spec, sort_keys=True, default=str)) for model, spec in self.config["models"].items()}

    @functools.cached_property
    def splits(self) -> dict[str, Any]:
        """model -> its PixelSplit, for every model that reads a cache."""
        return {model: split for model, (split, _) in self._planned.items() if split is not None}

    @functools.cached_property
    def reasons(self) -> dict[str, str]:
        """model -> why it decodes its images itself."""
        return {model: reason for model, (split, reason) in self._planned.items() if split is None}

    @functools.cached_property
    def geometries(self) -> dict[str, Any]:
        """geometry name -> its PixelSplit, one per distinct geometry."""
        return {split.name: split for split in self.splits.values()}

    def models_of(self, geometry: str) -> list[str]:
        return [model for model, split in self.splits.items() if split.name == geometry]

    def jobs(self) -> list[tuple[str, str]]:
        """(dataset, geometry) of every cache job: one per distinct geometry, however many models share it."""
        return [(dataset, geometry) for dataset in self.datasets for geometry in sorted(self.geometries)]

    def targets(self) -> list[str]:
        return [path("pixel_cache", dataset=d, geometry=g) for d, g in self.jobs()]

    # input functions and params (Snakemake calls them with the job's wildcards)

    def embed_pixels(self, wildcards) -> str | list[str]:
        """The cache an embedding job reads, or nothing when its model decodes the images itself (the rule marks
        it ancient: a cache refilled for a model added later re-runs none of the tables already made from it)."""
        split = self.splits.get(wildcards.model)
        return path("pixel_cache", dataset=wildcards.dataset, geometry=split.name) if split else []

    def embed_pixel_index(self, wildcards) -> str | list[str]:
        """The index of :meth:`embed_pixels`' cache, or nothing."""
        split = self.splits.get(wildcards.model)
        return path("pixel_index", dataset=wildcards.dataset, geometry=split.name) if split else []

    def geometry(self, wildcards) -> dict[str, Any]:
        """The cache job's param: the geometry as data (what the pixels depend on, with the files)."""
        return self.geometries[wildcards.geometry].geometry_params()

    def runtime_min(self, wildcards, input, attempt) -> int:
        # ~30 core-ms to decode and resize a 1024-px PNG, on the rule's 4 threads; a slow network file system
        # and hashing every file double it
        import pyarrow.parquet as pq

        try:
            rows = pq.read_metadata(input.manifest).num_rows
        except (OSError, AttributeError, TypeError, ValueError):
            rows = 20_000
        return (10 + rows // 2_000) * attempt
