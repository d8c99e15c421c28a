"""The multi-label stage's paper-protocol jobs: Sadman et al.'s further analyses per (dataset, model) under ``sadman2025``."""

from __future__ import annotations

from typing import Any

from vlmprobe.plan.paths import path


class PaperAnalysesPlan:
    """Composed into :class:`vlmprobe.plan.Plan` as ``plan.paper_analyses``: the jobs, inputs and targets of rule
    ``multilabel_paper_analyses`` (none unless ``multilabel: protocol: sadman2025``); the job itself is
    :func:`vlmprobe.multilabel.paper_analyses.run_paper_analyses`."""

    def __init__(self, plan: Any):
        self.plan = plan

    def pairs(self) -> list[tuple[str, str]]:
        if self.plan.protocol != "sadman2025":
            return []
        return sorted({(dataset, model) for dataset, model, _ in self.plan.study_jobs()})

    def dirs(self) -> list[str]:
        return [path("multilabel_paper_analyses", dataset=d, model=m) for d, m in self.pairs()]

    def settings(self, wildcards) -> list[str]:
        return [s for d, m, s in self.plan.study_jobs() if d == wildcards.dataset and m == wildcards.model]

    def inputs(self, wildcards) -> dict[str, Any]:
        """The manifest, the frozen embeddings, each running setting's predictions, the lp head, and ft's head,
        embeddings and history."""
        names = {"dataset": wildcards.dataset, "model": wildcards.model}
        settings = self.settings(wildcards)
        inputs: dict[str, Any] = {"manifest": path("manifest", **names), "embeddings": path("embedding", **names)}
        inputs.update({f"{s}_predictions": path("multilabel_predictions", setting=s, **names) for s in settings})
        if "lp" in settings:
            inputs["lp_head"] = path("multilabel_lp_head", **names)
        if "ft" in settings:
            inputs.update(ft_head=path("finetune_head", **names), ft_embeddings=path("finetune_embedding", **names), ft_info=path("finetune_info", **names))
        return inputs
