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

    def probe_predictions(self, dataset: str, model: str) -> str | None:
        """The linear probe's per-sample predictions the page colours by: the seed-002 probe's on a multi-class
        dataset, the multi-label study's ``lp`` setting's on a multi-label one; None where neither runs."""
        if dataset in self.plan.multiclass_datasets and self.plan.config["linear_probe"]["enabled"]:
            return path("linear_probe_predictions", dataset=dataset, model=model)
        if dataset in self.plan.study_datasets and self.plan.setting_skip_reason(model, "lp") is None:
            return path("multilabel_predictions", dataset=dataset, model=model, setting="lp")
        return None

    def page_inputs(self, wildcards) -> dict[str, str]:
        """The manifest, the grid, the dataset's thumbnails and, where the linear probe runs, its predictions."""
        names = {"dataset": wildcards.dataset, "model": wildcards.model}
        inputs = {
            "manifest": path("manifest", **names),
            "coords": path("umap_coords", **names),
            "thumbnails": path("explore_thumbnails", **names),
        }
        predictions = self.probe_predictions(wildcards.dataset, wildcards.model)
        if predictions:
            inputs["predictions"] = predictions
        return inputs

    def page_params(self, wildcards) -> dict[str, Any]:
        spec = self.plan.config["datasets"][wildcards.dataset]
        return {
            "cell": dict(self.block["cell"]),
            "nuisances": list(spec.get("nuisances", [])),
            "group": spec.get("group"),
            "index": path("explore_index"),
        }
