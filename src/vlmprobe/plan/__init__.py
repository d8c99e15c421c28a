"""The job plan: from the validated config (after Snakemake's ``validate`` filled in the defaults), every job
list, target list, rule parameter, input and skip reason of the workflow, computed once.

The rule files (workflow/rules/*.smk) only wire a :class:`Plan` into rules: ``plan = Plan(config)`` in
common.smk, then its attributes as values and its methods as input functions, params and resources
(Snakemake calls them with the job's ``wildcards``). Nothing here imports Snakemake, so the plan is
unit-tested on its own (tests/test_plan.py).

What a model can do comes from its family (:mod:`vlmprobe.models.base`): zero-shot needs
``has_text_tower``, fine-tuning ``trainable``, Grad-CAM ``has_layers``; adding a family adds its jobs.

The params of a job are what its numbers depend on; Snakemake re-runs a job whose params change, so their
values stay exactly as they were when results were made (a default that adds nothing is left out).
"""

from __future__ import annotations

import re
from typing import Any

from vlmprobe.config_check import configuration_error, cross_check_problems
from vlmprobe.datasets import is_multilabel
from vlmprobe.formats.embeddings import FORMAT_VERSION
from vlmprobe.models.base import NO_TEXT_TOWER, ModelFamily, family_of
from vlmprobe.plan.explore import ExplorePlan
from vlmprobe.plan.paper_analyses import PaperAnalysesPlan
from vlmprobe.plan.paths import PATHS, benchmark_path, log_path, path, summary_files
from vlmprobe.plan.pixel_cache import GEOMETRY_PATTERN, PixelCaches
from vlmprobe.plan.probes import ProbesPlan
from vlmprobe.plan.resources import Resources

__all__ = ["PATHS", "SETTINGS", "Plan", "benchmark_path", "log_path", "path"]

SETTINGS = ("zs", "lp", "ft")
SETTING_BLOCKS = {"zs": "zero_shot", "lp": "linear_probe", "ft": "finetune"}
# Keys of a multi-label block that change no number (runtime settings), left out of the jobs' params.
RUNTIME_KEYS = ("enabled", "models", "device", "num_workers", "progress")


def one_of(names: list[str]) -> str:
    """A wildcard constraint matching exactly these names."""
    return "|".join(re.escape(name) for name in names)


def runtime_free(block: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in block.items() if key not in RUNTIME_KEYS}


class Plan:
    """Every job of the workflow for one validated config."""

    def __init__(self, config: dict[str, Any]):
        problems = cross_check_problems(config)
        if problems:
            raise configuration_error(problems)
        self.config = config
        self.seed = config["seed"]
        self.resources = Resources(config)
        self.datasets = list(config["datasets"])
        self.models = list(config["models"])
        self.families: dict[str, ModelFamily] = {model: family_of(model, spec) for model, spec in config["models"].items()}
        self.wildcard_constraints = {
            "dataset": one_of(self.datasets),
            "model": one_of(self.models),
            "setting": "|".join(SETTINGS),
            "nuisance": "meta_[^/]+",
            "geometry": GEOMETRY_PATTERN,
        }
        self.pixel_caches = PixelCaches(config)  # one pixel cache per (dataset, geometry), shared by its models

        # datasets: multi-class ones get the linear probe, multi-label ones the multi-label study
        self.multiclass_datasets = [d for d in self.datasets if not is_multilabel(d, config["datasets"][d])]
        self.multilabel_datasets = [d for d in self.datasets if d not in self.multiclass_datasets]
        self.grouped_datasets = [d for d in self.datasets if config["datasets"][d].get("group")]

        # the multi-label study
        multilabel = config["multilabel"]
        self.protocol = multilabel["protocol"]  # vlmprobe (ours) or sadman2025 (the paper's notebook)
        # A paper protocol travels in the jobs' params; the default adds nothing, so results made before protocols existed stay valid.
        self.protocol_params = {} if self.protocol == "vlmprobe" else {"protocol": self.protocol, "validation_fold": multilabel["finetune"]["validation_fold"]}
        if not multilabel["enabled"]:
            self.study_datasets = []
        elif multilabel["datasets"] is not None:
            self.study_datasets = list(multilabel["datasets"])
        else:
            self.study_datasets = list(self.multilabel_datasets)
        listed = multilabel["finetune"]["models"]
        self.finetune_models = [m for m in self.models if self.families[m].trainable] if listed is None else list(listed)

        # Grad-CAM heatmaps of the study's settings
        heatmaps = config["heatmaps"]
        self.heatmap_settings = [setting for setting in SETTINGS if setting in heatmaps["settings"]]
        if not heatmaps["enabled"]:
            self.heatmap_datasets = []
        elif heatmaps["datasets"] is None:
            self.heatmap_datasets = list(self.study_datasets)
        else:
            self.heatmap_datasets = list(heatmaps["datasets"])
        self.heatmap_models = [m for m in self.models if self.families[m].has_layers] if heatmaps["models"] is None else list(heatmaps["models"])
        self.heatmap_jobs = [
            (dataset, model, setting)
            for dataset in self.heatmap_datasets
            for model in self.heatmap_models
            for setting in self.heatmap_settings
            if self.setting_skip_reason(model, setting) is None
        ]

        # nuisance probes and the shortcut curve
        nuisance = config["nuisance"]
        self.nuisances = {
            d: list(config["datasets"][d].get("nuisances", [])) for d in self.datasets if nuisance["enabled"] and config["datasets"][d].get("nuisances")
        }
        self.shortcut_datasets = [
            d for d in self.datasets if nuisance["enabled"] and nuisance["shortcut_curve"]["enabled"] and config["datasets"][d].get("shortcut")
        ]

        # kNN, few-shot, tuned probe, subgroup gaps, robustness index, rank stability (vlmprobe.plan.probes)
        self.probes = ProbesPlan(config, self.multiclass_datasets, self.models)
        self.wildcard_constraints.update(self.probes.wildcard_constraints)
        self.explore = ExplorePlan(self)
        self.paper_analyses = PaperAnalysesPlan(self)  # protocol sadman2025's further analyses

    # -- paths ---------------------------------------------------------------------------------------

    paths = PATHS
    embedding_format_version = FORMAT_VERSION
    path = staticmethod(path)
    log = staticmethod(log_path)
    benchmark = staticmethod(benchmark_path)

    def per_model(self, key: str) -> list[str]:
        """``PATHS[key]`` for every model, the other wildcards left to Snakemake."""
        return [path(key, model=model) for model in self.models]

    # -- skip reasons --------------------------------------------------------------------------------

    def setting_skip_reason(self, model: str, setting: str) -> str | None:
        """Why a (model, setting) of the multi-label study does not run, or None when it does."""
        block = SETTING_BLOCKS[setting]
        family = self.families[model]
        if not self.config["multilabel"][block]["enabled"]:
            return f"`multilabel: {block}: enabled: false`"
        if setting == "zs" and not family.has_text_tower:
            return NO_TEXT_TOWER
        if setting == "ft" and model not in self.finetune_models:
            if not family.trainable:
                return f"family {self.config['models'][model].get('family')!r} has no trainable image tower"
            return "not listed in `multilabel: finetune: models`"
        return None

    def heatmap_skip_reason(self, model: str, setting: str) -> str | None:
        """Why a (model, setting) has no Grad-CAM maps, or None: the settings the multi-label study runs, of the
        models with layers that `heatmaps:` maps."""
        if not self.families[model].has_layers:
            return f"family {self.config['models'][model].get('family')!r} has no layers to attribute"
        if model not in self.heatmap_models:
            return "not listed in `heatmaps: models`"
        if setting not in self.heatmap_settings:
            return "not listed in `heatmaps: settings`"
        return self.setting_skip_reason(model, setting)

    def study_jobs(self) -> list[tuple[str, str, str]]:
        """(dataset, model, setting) of every multi-label study job that runs."""
        return [
            (dataset, model, setting)
            for dataset in self.study_datasets
            for model in self.models
            for setting in SETTINGS
            if self.setting_skip_reason(model, setting) is None
        ]

    def multilabel_skipped(self) -> list[dict[str, str]]:
        return [
            {"dataset": dataset, "model": model, "setting": setting, "protocol": self.protocol, "reason": reason}
            for dataset in self.study_datasets
            for model in self.models
            for setting in SETTINGS
            if (reason := self.setting_skip_reason(model, setting)) is not None
        ]

    # -- job lists and targets -----------------------------------------------------------------------

    def linear_probe_results(self) -> list[str]:
        """Linear probes (seed-002 protocol) cover multi-class datasets; multi-label ones have their own study."""
        if not self.config["linear_probe"]["enabled"]:
            return []
        return [path("linear_probe", dataset=d, model=m) for d in self.multiclass_datasets for m in self.models]

    def multilabel_results(self) -> list[str]:
        return [path("multilabel_metrics", dataset=d, model=m, setting=s) for d, m, s in self.study_jobs()]

    def heatmap_scores(self) -> list[str]:
        return [path("heatmap_scores", dataset=d, model=m, setting=s) for d, m, s in self.heatmap_jobs]

    def nuisance_results(self) -> list[str]:
        return [path("nuisance", dataset=d, model=m) for d in self.nuisances for m in self.models]

    def shortcut_results(self) -> list[str]:
        return [path("shortcut_curve", dataset=d, model=m) for d in self.shortcut_datasets for m in self.models]

    def umap_tables(self) -> list[tuple[str, str]]:
        return [(dataset, model) for dataset in self.datasets for model in self.models]

    def umap_qualities(self) -> list[str]:
        return [path("umap_quality", dataset=d, model=m) for d, m in self.umap_tables()]

    def group_split_targets(self) -> list[str]:
        return [path("group_split", dataset=d) for d in self.grouped_datasets]

    def embedding_targets(self) -> list[str]:
        return [path("embedding", dataset=d, model=m) for d in self.datasets for m in self.models]

    def umap_targets(self) -> list[str]:
        if not self.config["umap"]["enabled"]:
            return []
        return (
            [path("umap_figure", dataset=d, model=m) for d in self.datasets for m in self.models]
            + [path("umap_models", dataset=d) for d in self.datasets]
            + summary_files("summary_umap")
        )

    def heatmap_targets(self) -> list[str]:
        targets = [path("heatmap_maps", dataset=d, model=m, setting=s) for d, m, s in self.heatmap_jobs] + self.heatmap_scores()
        pairs = sorted({(d, m) for d, m, _ in self.heatmap_jobs})
        return targets + [path("heatmap_comparison", dataset=d, model=m) for d, m in pairs if len(self.comparison_settings_of(d, m)) >= 2]

    def nuisance_targets(self) -> list[str]:
        targets = []
        if self.nuisances:
            targets += summary_files("summary_nuisance")
        if self.nuisances and self.config["nuisance"]["umap"] and self.config["umap"]["enabled"]:
            targets += [path("nuisance_umap", dataset=d, model=m, nuisance=n) for d, columns in self.nuisances.items() for m in self.models for n in columns]
        if self.shortcut_datasets:
            targets += summary_files("summary_shortcut")
        return targets

    def linear_probe_summary_targets(self) -> list[str]:
        if not (self.config["linear_probe"]["enabled"] and self.multiclass_datasets):
            return []
        return summary_files("summary_linear_probe")

    def group_gap_targets(self) -> list[str]:
        grouped = [d for d in self.multiclass_datasets if d in self.grouped_datasets]
        return [PATHS["summary_group_gap_png"]] if grouped and self.linear_probe_summary_targets() else []

    def reference_targets(self) -> list[str]:
        targets = []
        if "linear_probe" in self.config["reference"] and self.linear_probe_summary_targets():
            targets += [PATHS["reference_linear_probe_csv"], PATHS["reference_linear_probe_md"]]
        if "multilabel" in self.config["reference"]:
            targets += [PATHS["reference_multilabel_csv"], PATHS["reference_multilabel_md"]]
        return targets

    def multilabel_summary_targets(self) -> list[str]:
        return summary_files("summary_multilabel") if self.study_datasets else []

    def heatmap_summary_targets(self) -> list[str]:
        return summary_files("summary_heatmaps") if self.heatmap_jobs else []

    def compare_targets(self) -> list[str]:
        targets = []
        for kind, entries in (("linear_probe", self.compare_linear_probe_entries()), ("multilabel", self.compare_multilabel_entries())):
            if entries:
                targets += summary_files(f"compare_{kind}")
        return targets

    def all_targets(self) -> list[str]:
        """What `rule all` asks for: every stage's final outputs."""
        return (
            self.group_split_targets()
            + self.embedding_targets()
            + self.umap_targets()
            + self.explore.targets()
            + self.heatmap_targets()
            + self.nuisance_targets()
            + self.linear_probe_summary_targets()
            + self.group_gap_targets()
            + self.reference_targets()
            + self.multilabel_summary_targets()
            + self.paper_analyses.dirs()
            + self.heatmap_summary_targets()
            + self.compare_targets()
            + self.probes.targets()
        )

    # -- params and input functions (Snakemake calls them with the job's wildcards) -------------------

    def dataset_spec(self, wildcards) -> dict[str, Any]:
        return self.config["datasets"][wildcards.dataset]

    def model_spec(self, wildcards) -> dict[str, Any]:
        return self.config["models"][wildcards.model]

    def manifest_spec(self, wildcards) -> dict[str, Any]:
        """The dataset spec without `group`: declaring a group adds a side table (group_split), it never
        rewrites the manifest and so never invalidates the dataset's embedding tables."""
        return {key: value for key, value in self.config["datasets"][wildcards.dataset].items() if key != "group"}

    @property
    def split_params(self) -> dict[str, Any]:
        """The default split protocol adds nothing, so manifests made before protocols existed stay valid."""
        return {key: value for key, value in self.config["split"].items() if (key, value) != ("protocol", "vlmprobe")}

    def dataset_dir(self, wildcards) -> str:
        return path("dataset_dir", dataset=wildcards.dataset)

    def group_column(self, wildcards) -> str:
        return self.config["datasets"][wildcards.dataset]["group"]

    def group_split_input(self, wildcards) -> str | list[str]:
        """The group-aware split of a dataset that names a `group:` column, else nothing."""
        if wildcards.dataset in self.grouped_datasets:
            return path("group_split", dataset=wildcards.dataset)
        return []

    def model_input_files(self, wildcards) -> list[str]:
        """Local files the model reads (weights, a local-dir's config) are inputs of the jobs that load it, so
        replacing one re-runs them; the family knows which."""
        return self.families[wildcards.model].input_files(self.config["models"][wildcards.model])

    def positive_label(self, wildcards) -> Any:
        """A dataset's `fscore:` travels with its positive label, only where set (older results stay valid)."""
        spec = self.config["datasets"][wildcards.dataset]
        if "fscore" in spec:
            return {"positive_label": spec.get("positive_label"), "fscore": spec["fscore"]}
        return spec.get("positive_label")

    def umap_grid_params(self, wildcards) -> dict[str, Any]:
        """The grid of this dataset: the config's `umap` block, overridden by the dataset's own `umap` block."""
        grid = {key: self.config["umap"][key] for key in ("n_neighbors", "min_dist", "colour_by", "trust_subsample")}
        grid.update(self.config["datasets"][wildcards.dataset].get("umap", {}))
        return grid

    def umap_colour_by(self, wildcards) -> str | None:
        return self.umap_grid_params(wildcards)["colour_by"]

    @property
    def umap_summary_cell(self) -> dict[str, Any]:
        return self.config["umap"]["summary_cell"]

    # multi-label study

    @property
    def multilabel_lp_settings(self) -> dict[str, Any]:
        return {**runtime_free(self.config["multilabel"]["linear_probe"]), **self.protocol_params}

    @property
    def finetune_settings(self) -> dict[str, Any]:
        return {**runtime_free(self.config["multilabel"]["finetune"]), **self.protocol_params}

    @property
    def zero_shot_decision(self) -> dict[str, Any]:
        block = self.config["multilabel"]["zero_shot"]
        return {"rule": block["rule"], "threshold": block["threshold"], **self.protocol_params}

    @property
    def bootstrap(self) -> dict[str, Any]:
        return {**self.config["multilabel"]["bootstrap"], "seed": self.seed}

    def zero_shot_prompts(self, wildcards) -> dict[str, Any]:
        block = self.config["multilabel"]["zero_shot"]
        return {
            "templates": list(block["dataset_templates"].get(wildcards.dataset, block["templates"])),
            "label_text": dict(block["label_text"].get(wildcards.dataset, {})),
        }

    def metrics_embeddings(self, wildcards) -> str:
        """zs and lp are scored on the frozen embeddings, ft on its own fine-tuned ones."""
        key = "finetune_embedding" if wildcards.setting == "ft" else "embedding"
        return path(key, dataset=wildcards.dataset, model=wildcards.model)

    def metrics_expected_spec(self, wildcards) -> dict[str, Any] | None:
        """The frozen embeddings must come from the configured model; fine-tuned ones are the job's own."""
        return None if wildcards.setting == "ft" else self.config["models"][wildcards.model]

    # heatmaps

    def heatmap_inputs(self, wildcards) -> dict[str, Any]:
        """The manifest and model, plus the probe head (lp) or the fine-tuned encoder and head (ft)."""
        names = {"dataset": wildcards.dataset, "model": wildcards.model}
        inputs = {
            "manifest": path("manifest", **names),
            "check": path("model_check", **names),
            "weights": self.model_input_files(wildcards),
        }
        if wildcards.setting == "lp":
            inputs["head"] = path("multilabel_lp_head", **names)
        elif wildcards.setting == "ft":
            inputs["encoder"] = path("finetune_encoder", **names)
            inputs["head"] = path("finetune_head", **names)
        return inputs

    def heatmap_options(self, wildcards) -> dict[str, Any]:
        """What the maps and scores of one job depend on (figure layout and device are runtime settings)."""
        heatmaps = self.config["heatmaps"]
        return {
            "method": heatmaps["method"],
            "target_layer": heatmaps["target_layers"].get(wildcards.model),
            **{key: heatmaps[key] for key in ("max_annotated", "n_random", "iou_threshold", "threshold_rule")},
            **({"protocol": self.protocol} if self.protocol != "vlmprobe" else {}),  # sadman2025: the notebook's Grad-CAM
        }

    def heatmap_zero_shot(self, wildcards) -> dict[str, Any] | None:
        return self.zero_shot_prompts(wildcards) if wildcards.setting == "zs" else None

    def comparison_settings_of(self, dataset: str, model: str) -> list[str]:
        return [s for d, m, s in self.heatmap_jobs if d == dataset and m == model]

    def comparison_settings(self, wildcards) -> list[str]:
        return self.comparison_settings_of(wildcards.dataset, wildcards.model)

    def comparison_maps(self, wildcards) -> list[str]:
        return [path("heatmap_maps", dataset=wildcards.dataset, model=wildcards.model, setting=s) for s in self.comparison_settings(wildcards)]

    # nuisance

    def nuisance_columns(self, wildcards) -> list[str]:
        return self.nuisances[wildcards.dataset]

    def shortcut_finding(self, wildcards) -> str:
        return self.config["datasets"][wildcards.dataset]["shortcut"]["finding"]

    @property
    def nuisance_permutations(self) -> int:
        return self.config["nuisance"]["n_permutations"]

    @property
    def shortcut_rates(self) -> list[float]:
        return self.config["nuisance"]["shortcut_curve"]["rates"]

    @property
    def shortcut_repeats(self) -> int:
        return self.config["nuisance"]["shortcut_curve"]["repeats"]

    # compare

    @property
    def compare_settings(self) -> dict[str, Any]:
        compare = self.config["compare"]
        return {key: compare[key] for key in ("n_resamples", "n_permutations", "confidence", "alpha")} | {"seed": self.seed}

    def compare_linear_probe_entries(self) -> list[dict[str, str]]:
        if not (self.config["compare"]["enabled"] and len(self.models) >= 2):
            return []
        return [
            {
                "dataset": dataset,
                "model": model,
                "predictions": path("linear_probe_predictions", dataset=dataset, model=model),
                "result": path("linear_probe", dataset=dataset, model=model),
            }
            for dataset in self.multiclass_datasets
            if self.config["linear_probe"]["enabled"]
            for model in self.models
        ]

    def compare_multilabel_entries(self) -> list[dict[str, str]]:
        if not self.config["compare"]["enabled"]:
            return []
        entries = [
            {
                "dataset": dataset,
                "model": model,
                "setting": setting,
                "predictions": path("multilabel_predictions", dataset=dataset, model=model, setting=setting),
                "result": path("multilabel_metrics", dataset=dataset, model=model, setting=setting),
            }
            for dataset, model, setting in self.study_jobs()
        ]
        return entries if len(entries) >= 2 else []

    @staticmethod
    def entry_files(entries: list[dict[str, str]]) -> list[str]:
        return [entry[key] for entry in entries for key in ("predictions", "result")]

    def study_manifests(self) -> dict[str, str]:
        return {dataset: path("manifest", dataset=dataset) for dataset in self.study_datasets}

    # reference

    def reference_block(self, kind: str) -> dict[str, Any] | None:
        return self.config["reference"].get(kind)

    def reference_multilabel_input(self) -> list[str]:
        """Our summary the multi-label reference reads: the PATHS key the preset names, when the workflow has it."""
        block = self.config["reference"].get("multilabel")
        return [PATHS[block["ours"]]] if block and block["ours"] in PATHS else []

    def reference_missing_reason(self) -> str | None:
        block = self.config["reference"].get("multilabel")
        if block is None:
            return None
        if block["ours"] in PATHS:
            return "not run: no result in our summary"
        return f"not run: the workflow has no {block['ours']!r} summary"
