"""Every output, log and benchmark path of the workflow, spelled once.

A path is a pattern over the wildcards ``{dataset}``, ``{model}``, ``{setting}`` (zs, lp, ft),
``{geometry}`` (a pixel cache's), ``{nuisance}`` and ``{probe}`` (knn, logistic); :func:`path` fills some or all of them, leaving the others for Snakemake.
"""

from __future__ import annotations

import re

PATHS: dict[str, str] = {
    # datasets
    "manifest": "results/manifests/{dataset}.parquet",
    "group_split": "results/manifests/{dataset}.groups.parquet",
    "dataset_dir": "results/datasets/{dataset}",
    # embed
    "model_check": "results/checks/models/{model}.json",
    "embedding": "results/embeddings/{dataset}/{model}.parquet",
    "pixel_cache": "results/pixels/{dataset}/{geometry}.npy",
    "pixel_index": "results/pixels/{dataset}/{geometry}.parquet",
    # linear_probe
    "linear_probe": "results/linear_probe/{dataset}/{model}.json",
    "linear_probe_predictions": "results/linear_probe/{dataset}/{model}.predictions.parquet",
    "summary_linear_probe": "results/summary/linear_probe.parquet",
    "summary_linear_probe_csv": "results/summary/linear_probe.csv",
    "summary_linear_probe_md": "results/summary/linear_probe.md",
    "summary_linear_probe_html": "results/summary/linear_probe.html",
    "summary_linear_probe_png": "results/summary/linear_probe_accuracy.png",
    "summary_group_gap_png": "results/summary/linear_probe_group_gap.png",
    # umap
    "umap_coords": "results/umap/{dataset}/{model}.parquet",
    "umap_quality": "results/umap/{dataset}/{model}_quality.parquet",
    "umap_figure": "results/umap/{dataset}/{model}.png",
    "umap_models": "results/umap/{dataset}/models.png",
    "summary_umap": "results/summary/umap_quality.parquet",
    "summary_umap_csv": "results/summary/umap_quality.csv",
    "summary_umap_md": "results/summary/umap_quality.md",
    "summary_umap_html": "results/summary/umap_quality.html",
    # explore
    "explore_thumbnails": "results/explore/{dataset}/thumbnails",
    "explore_page": "results/explore/{dataset}/{model}.html",
    "explore_index": "results/explore/index.html",
    # multilabel
    "multilabel_predictions": "results/multilabel/{dataset}/{model}/{setting}.predictions.parquet",
    "multilabel_metrics": "results/multilabel/{dataset}/{model}/{setting}.json",
    "multilabel_lp_head": "results/multilabel/{dataset}/{model}/lp.head.safetensors",
    "finetune_encoder": "results/finetune/{dataset}/{model}/encoder.safetensors",
    "finetune_head": "results/finetune/{dataset}/{model}/head.safetensors",
    "finetune_info": "results/finetune/{dataset}/{model}/finetune.json",
    "finetune_embedding": "results/finetune/{dataset}/{model}/embeddings.parquet",
    "multilabel_paper_analyses": "results/multilabel/{dataset}/{model}/sadman2025",
    "summary_multilabel": "results/summary/multilabel.parquet",
    "summary_multilabel_csv": "results/summary/multilabel.csv",
    "summary_multilabel_md": "results/summary/multilabel.md",
    # heatmaps
    "heatmap_maps": "results/heatmaps/{dataset}/{model}/{setting}",
    "heatmap_scores": "results/heatmaps/{dataset}/{model}/{setting}_scores.parquet",
    "heatmap_comparison": "results/heatmaps/{dataset}/{model}/settings_comparison.png",
    "summary_heatmaps": "results/summary/heatmaps.parquet",
    "summary_heatmaps_md": "results/summary/heatmaps.md",
    "summary_heatmaps_png": "results/summary/heatmaps.png",
    # nuisance
    "nuisance": "results/nuisance/{dataset}/{model}.json",
    "shortcut_curve": "results/nuisance/{dataset}/{model}_shortcut.json",
    "nuisance_umap": "results/nuisance/{dataset}/{model}_umap_{nuisance}.png",
    "summary_nuisance": "results/summary/nuisance.parquet",
    "summary_nuisance_csv": "results/summary/nuisance.csv",
    "summary_nuisance_md": "results/summary/nuisance.md",
    "summary_nuisance_html": "results/summary/nuisance.html",
    "summary_nuisance_png": "results/summary/nuisance.png",
    "summary_shortcut": "results/summary/shortcut_curve.parquet",
    "summary_shortcut_csv": "results/summary/shortcut_curve.csv",
    "summary_shortcut_md": "results/summary/shortcut_curve.md",
    "summary_shortcut_png": "results/summary/shortcut_curve.png",
    # probes
    "probes": "results/probes/{dataset}/{model}.json",
    "probes_predictions": "results/probes/{dataset}/{model}.{probe}.predictions.parquet",
    "summary_probes": "results/summary/probes.parquet",
    "summary_probes_csv": "results/summary/probes.csv",
    "summary_probes_md": "results/summary/probes.md",
    "summary_probes_html": "results/summary/probes.html",
    "summary_probes_png": "results/summary/probes.png",
    "summary_probes_few_shot_png": "results/summary/probes_few_shot.png",
    "summary_probes_ranks_csv": "results/summary/probes_rank_stability.csv",
    "compare_probe": "results/summary/compare_{probe}.parquet",
    "compare_probe_csv": "results/summary/compare_{probe}.csv",
    "compare_probe_md": "results/summary/compare_{probe}.md",
    "compare_probe_html": "results/summary/compare_{probe}.html",
    "compare_probe_png": "results/summary/compare_{probe}.png",
    # compare
    "compare_linear_probe": "results/summary/compare_linear_probe.parquet",
    "compare_linear_probe_csv": "results/summary/compare_linear_probe.csv",
    "compare_linear_probe_md": "results/summary/compare_linear_probe.md",
    "compare_linear_probe_html": "results/summary/compare_linear_probe.html",
    "compare_linear_probe_png": "results/summary/compare_linear_probe.png",
    "compare_multilabel": "results/summary/compare_multilabel.parquet",
    "compare_multilabel_csv": "results/summary/compare_multilabel.csv",
    "compare_multilabel_md": "results/summary/compare_multilabel.md",
    "compare_multilabel_html": "results/summary/compare_multilabel.html",
    "compare_multilabel_png": "results/summary/compare_multilabel.png",
    # reference
    "reference_linear_probe_csv": "results/summary/reference/linear_probe.csv",
    "reference_linear_probe_md": "results/summary/reference/linear_probe.md",
    "reference_multilabel_csv": "results/summary/reference/multilabel.csv",
    "reference_multilabel_md": "results/summary/reference/multilabel.md",
}
LOGS = "logs/{rule}/{name}.log"
BENCHMARKS = "benchmarks/{rule}/{name}.tsv"
# A summary's table, then the files written beside it (the suffixes of its PATHS keys).
SUMMARY_FILES = {
    "summary_linear_probe": ("", "_csv", "_md", "_html", "_png"),
    "summary_umap": ("", "_csv", "_md", "_html"),
    "summary_multilabel": ("", "_csv", "_md"),
    "summary_heatmaps": ("", "_md", "_png"),
    "summary_nuisance": ("", "_csv", "_md", "_html", "_png"),
    "summary_shortcut": ("", "_csv", "_md", "_png"),
    "summary_probes": ("", "_csv", "_md", "_html", "_png", "_few_shot_png", "_ranks_csv"),
    "compare_probe": ("", "_csv", "_md", "_html", "_png"),
    "compare_linear_probe": ("", "_csv", "_md", "_html", "_png"),
    "compare_multilabel": ("", "_csv", "_md", "_html", "_png"),
}
_WILDCARD = re.compile(r"\{(\w+)\}")


def path(key: str, **wildcards: str) -> str:
    """``PATHS[key]`` with the given wildcards filled in; the others stay ``{name}`` for Snakemake."""
    return _WILDCARD.sub(lambda match: str(wildcards.get(match.group(1), match.group(0))), PATHS[key])


def summary_files(key: str) -> list[str]:
    """The table of one summary and every file written beside it."""
    return [PATHS[key + suffix] for suffix in SUMMARY_FILES[key]]


def log_path(rule: str, name: str) -> str:
    return LOGS.format(rule=rule, name=name)


def benchmark_path(rule: str, name: str) -> str:
    return BENCHMARKS.format(rule=rule, name=name)
