"""The probes stage's part of the plan: its jobs, targets, params and the paired comparisons of its predictions."""

from __future__ import annotations

from typing import Any

from vlmprobe.plan.paths import PATHS, SUMMARY_FILES, path, summary_files

PREDICTING_PROBES = ("knn", "logistic")  # the probes with one prediction per test sample: compared in pairs


class ProbesPlan:
    """Which (dataset, model) tables the probes read, with what settings, and what they compare."""

    def __init__(self, config: dict[str, Any], multiclass_datasets: list[str], models: list[str]):
        self.config = config
        self.block = config["probes"]
        self.datasets = list(multiclass_datasets) if self.block["enabled"] else []
        self.models = list(models)
        self.predicting = [probe for probe in PREDICTING_PROBES if self.block[probe]["enabled"]]
        self.wildcard_constraints = {"probe": "|".join(PREDICTING_PROBES)}

    # -- jobs and targets

    def results(self) -> list[str]:
        return [path("probes", dataset=d, model=m) for d in self.datasets for m in self.models]

    def compared(self) -> list[str]:
        """The predicting probes whose pairs of models are compared (compare on, two models or more)."""
        if not (self.datasets and self.config["compare"]["enabled"] and len(self.models) >= 2):
            return []
        return list(self.predicting)

    def targets(self) -> list[str]:
        if not self.datasets:
            return []
        compare = [path("compare_probe" + suffix, probe=probe) for probe in self.compared() for suffix in SUMMARY_FILES["compare_probe"]]
        return summary_files("summary_probes") + compare

    # -- params and inputs (Snakemake calls them with the job's wildcards)

    def prediction_outputs(self) -> dict[str, str]:
        """The per-sample prediction files of one job, one per enabled predicting probe (named by the probe)."""
        return {probe: path("probes_predictions", probe=probe) for probe in self.predicting}

    @property
    def settings(self) -> dict[str, Any]:
        """What every job's numbers depend on: the stage's block (seed and split come with the manifest)."""
        return {key: value for key, value in self.block.items() if key != "enabled"}

    def columns(self, wildcards) -> dict[str, Any]:
        """The dataset's declared `nuisances`, `subgroups` and `group` column."""
        spec = self.config["datasets"][wildcards.dataset]
        return {"nuisances": list(spec.get("nuisances", [])), "subgroups": list(spec.get("subgroups", [])), "group": spec.get("group")}

    def linear_probe_results(self) -> list[str]:
        """The poster's linear-probe results of the same tables: the first probe of the rank-stability tables."""
        if not self.config["linear_probe"]["enabled"]:
            return []
        return [path("linear_probe", dataset=d, model=m) for d in self.datasets for m in self.models]

    def compare_entries(self, wildcards) -> list[dict[str, str]]:
        return [
            {"dataset": d, "model": m, "predictions": path("probes_predictions", dataset=d, model=m, probe=wildcards.probe)}
            for d in self.datasets
            for m in self.models
        ]

    def compare_files(self, wildcards) -> list[str]:
        return [entry["predictions"] for entry in self.compare_entries(wildcards)]


__all__ = ["PATHS", "PREDICTING_PROBES", "ProbesPlan"]
