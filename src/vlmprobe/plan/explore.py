"""The explore stage's part of the plan: thumbnails per dataset, a page per (dataset, model), the index."""

from __future__ import annotations

from typing import Any

from vlmprobe.plan.paths import path


class ExplorePlan:
    """Composed into :class:`vlmprobe.plan.Plan` as ``plan.explore``; needs the UMAP grids it draws."""

    def __init__(self, plan: Any):
        self.plan = plan
        self.block = plan.config["explore"]
        self.enabled = bool(self.block["enabled"] and plan.config["umap"]["enabled"])

    def pages(self) -> list[str]:
        return [path("explore_page", dataset=d, model=m) for d, m in self.plan.umap_tables()] if self.enabled else []

    def targets(self) -> list[str]:
        return self.pages() + [path("explore_index")] if self.enabled else []

    def index_entries(self) -> list[dict[str, str]]:
        return [{"dataset": d, "model": m, "page": path("explore_page", dataset=d, model=m)} for d, m in self.plan.umap_tables()] if self.enabled else []

    @property
    def thumbnail_params(self) -> dict[str, int]:
        return {"size": self.block["thumbnail_size"], "quality": self.block["thumbnail_quality"]}

    def has_probe_predictions(self, dataset: str) -> bool:
        return dataset in self.plan.multiclass_datasets and self.plan.config["linear_probe"]["enabled"]

    def page_inputs(self, wildcards) -> dict[str, str]:
        """The manifest, the grid, the dataset's thumbnails and, where the linear probe runs, its predictions."""
        names = {"dataset": wildcards.dataset, "model": wildcards.model}
        inputs = {
            "manifest": path("manifest", **names),
            "coords": path("umap_coords", **names),
            "thumbnails": path("explore_thumbnails", **names),
        }
        if self.has_probe_predictions(wildcards.dataset):
            inputs["predictions"] = path("linear_probe_predictions", **names)
        return inputs

    def page_params(self, wildcards) -> dict[str, Any]:
        spec = self.plan.config["datasets"][wildcards.dataset]
        return {
            "cell": dict(self.block["cell"]),
            "nuisances": list(spec.get("nuisances", [])),
            "group": spec.get("group"),
            "index": path("explore_index"),
        }
