# Paths, wildcard constraints and input functions shared by every stage.
import os
import re

from vlmprobe.datasets import is_multilabel
from vlmprobe.models.base import looks_like_path
from vlmprobe.formats.embeddings import FORMAT_VERSION

DATASETS = list(config["datasets"])
MODELS = list(config["models"])

# Every output path of the workflow, spelled once.
PATHS = {
    "manifest": "results/manifests/{dataset}.parquet",
    "group_split": "results/manifests/{dataset}.groups.parquet",
    "dataset_dir": "results/datasets/{dataset}",
    "model_check": "results/checks/models/{model}.json",
    "embedding": "results/embeddings/{dataset}/{model}.parquet",
    "linear_probe": "results/linear_probe/{dataset}/{model}.json",
    "linear_probe_predictions": "results/linear_probe/{dataset}/{model}.predictions.parquet",
    "summary_linear_probe": "results/summary/linear_probe.parquet",
    "summary_linear_probe_csv": "results/summary/linear_probe.csv",
    "summary_linear_probe_md": "results/summary/linear_probe.md",
    "summary_linear_probe_html": "results/summary/linear_probe.html",
    "summary_linear_probe_png": "results/summary/linear_probe_accuracy.png",
}
LOGS = "logs/{rule}/{name}.log"
BENCHMARKS = "benchmarks/{rule}/{name}.tsv"


def log_path(rule_name, name):
    return LOGS.format(rule=rule_name, name=name)


def benchmark_path(rule_name, name):
    return BENCHMARKS.format(rule=rule_name, name=name)


def one_of(names):
    return "|".join(re.escape(name) for name in names)


wildcard_constraints:
    dataset=one_of(DATASETS),
    model=one_of(MODELS),


def dataset_spec(wildcards):
    return config["datasets"][wildcards.dataset]


def manifest_spec(wildcards):
    """The dataset spec without `group`: declaring a group adds a side table (group_split), it never
    rewrites the manifest and so never invalidates the dataset's embedding tables."""
    return {
        key: value
        for key, value in config["datasets"][wildcards.dataset].items()
        if key != "group"
    }


GROUPED_DATASETS = [d for d in DATASETS if config["datasets"][d].get("group")]


def group_split_input(wildcards):
    """The group-aware split of a dataset that names a `group:` column, else nothing."""
    if wildcards.dataset in GROUPED_DATASETS:
        return PATHS["group_split"].format(dataset=wildcards.dataset)
    return []


def model_spec(wildcards):
    return config["models"][wildcards.model]


def model_weight_inputs(wildcards):
    """Local weight files are inputs of the embedding job, so replacing the file re-runs it."""
    spec = config["models"][wildcards.model]
    pretrained = spec.get("pretrained")
    files = []
    if (
        isinstance(pretrained, str)
        and looks_like_path(pretrained)
        and not pretrained.startswith("hf-hub:")
    ):
        files.append(pretrained.removeprefix("local-dir:"))
    name = str(spec.get("name", ""))
    if name.startswith("local-dir:"):
        files.append(
            os.path.join(name.removeprefix("local-dir:"), "open_clip_config.json")
        )
    return files


MULTICLASS_DATASETS = [
    d for d in DATASETS if not is_multilabel(d, config["datasets"][d])
]
MULTILABEL_DATASETS = [d for d in DATASETS if d not in MULTICLASS_DATASETS]


def linear_probe_results():
    """Linear probes (seed-002 protocol) cover multi-class datasets; multi-label ones have their own study."""
    if not config["linear_probe"]["enabled"]:
        return []
    return expand(PATHS["linear_probe"], dataset=MULTICLASS_DATASETS, model=MODELS)


# Each stage's rule file appends a function returning its final targets; `rule all` asks for all of them.
TARGET_FUNCTIONS = []


def all_targets():
    return [target for function in TARGET_FUNCTIONS for target in function()]
