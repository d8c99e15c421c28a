# Grad-CAM heatmaps of the multi-label study's settings (zs, lp, ft) per (dataset, model), on a bounded
# sample of test images (every annotated one up to `max_annotated`, plus `n_random` others), scored
# against the dataset's boxes or masks (pointing game, IoU, energy inside; chance beside), and the
# settings side by side for the same images. Needs multilabel.smk (probe heads, fine-tuned weights,
# prompts); the summary rule is at the end of aggregate.smk.
from vlmprobe.errors import VlmprobeError

PATHS.update(
    {
        "heatmap_maps": "results/heatmaps/{dataset}/{model}/{setting}",
        "heatmap_scores": "results/heatmaps/{dataset}/{model}/{setting}_scores.parquet",
        "heatmap_comparison": "results/heatmaps/{dataset}/{model}/settings_comparison.png",
        "summary_heatmaps": "results/summary/heatmaps.parquet",
        "summary_heatmaps_md": "results/summary/heatmaps.md",
        "summary_heatmaps_png": "results/summary/heatmaps.png",
    }
)
HEATMAPS = config["heatmaps"]
HEATMAP_SETTINGS = [
    setting for setting in ("zs", "lp", "ft") if setting in HEATMAPS["settings"]
]


def _heatmap_names(key, names, known, what):
    unknown = [name for name in names if name not in known]
    if unknown:
        raise VlmprobeError(
            f"`heatmaps: {key}` names {what}(s) {unknown} that config.yaml does not define.",
            f"use names from `{what}s:`: {known}.",
        )
    return list(names)


def _has_layers(model):
    return config["models"][model].get("family") != "pixels"


HEATMAP_DATASETS = (
    []
    if not HEATMAPS["enabled"]
    else (
        STUDY_DATASETS
        if HEATMAPS["datasets"] is None
        else _heatmap_names("datasets", HEATMAPS["datasets"], DATASETS, "dataset")
    )
)
HEATMAP_MODELS = (
    [m for m in MODELS if _has_layers(m)]
    if HEATMAPS["models"] is None
    else _heatmap_names("models", HEATMAPS["models"], MODELS, "model")
)
_heatmap_names("target_layers", list(HEATMAPS["target_layers"]), MODELS, "model")
for _model in HEATMAP_MODELS:
    if not _has_layers(_model):
        raise VlmprobeError(
            f"`heatmaps: models` lists {_model!r}, the pixels baseline: it has no layers to attribute.",
            "leave it out of `heatmaps: models`.",
        )


def heatmap_skip_reason(model, setting):
    """Why a (model, setting) has no heatmaps, or None: the settings the multi-label study runs."""
    return setting_skip_reason(model, setting)


HEATMAP_JOBS = [
    (dataset, model, setting)
    for dataset in HEATMAP_DATASETS
    for model in HEATMAP_MODELS
    for setting in HEATMAP_SETTINGS
    if heatmap_skip_reason(model, setting) is None
]


def heatmap_inputs(wildcards):
    """The manifest and model, plus the probe head (lp) or the fine-tuned encoder and head (ft)."""
    inputs = {
        "manifest": PATHS["manifest"].format(**wildcards),
        "check": PATHS["model_check"].format(**wildcards),
        "weights": model_weight_inputs(wildcards),
    }
    if wildcards.setting == "lp":
        inputs["head"] = PATHS["multilabel_lp_head"].format(**wildcards)
    elif wildcards.setting == "ft":
        inputs["encoder"] = PATHS["finetune_encoder"].format(**wildcards)
        inputs["head"] = PATHS["finetune_head"].format(**wildcards)
    return inputs


def heatmap_options(wildcards):
    """What the maps and scores of one job depend on (figure layout and device are runtime settings)."""
    return {
        "method": HEATMAPS["method"],
        "target_layer": HEATMAPS["target_layers"].get(wildcards.model),
        **{
            key: HEATMAPS[key]
            for key in ("max_annotated", "n_random", "iou_threshold", "threshold_rule")
        },
    }


def heatmap_runtime_min(wildcards, attempt):
    # ~(max_annotated + n_random) x 3 forward-backward passes; gradient-free methods (ScoreCAM) run one
    # forward pass per channel of the target layer, so they get far more time.
    images = HEATMAPS["max_annotated"] + HEATMAPS["n_random"]
    per_image = 2.0 if HEATMAPS["method"] == "scorecam" else 0.1
    return int((15 + images * per_image) * attempt)


rule heatmaps:
    input:
        unpack(heatmap_inputs),
    output:
        maps_dir=directory(PATHS["heatmap_maps"]),
        scores=PATHS["heatmap_scores"],
    log:
        log_path("heatmaps", "{dataset}/{model}/{setting}"),
    benchmark:
        benchmark_path("heatmaps", "{dataset}/{model}/{setting}")
    wildcard_constraints:
        setting="zs|lp|ft",
    conda:
        "../../envs/finetune.yaml"
    threads: 2
    resources:
        gpu=1 if HEATMAPS["gpu"] else 0,
        mem_mb=lambda wildcards, attempt: 8192 * attempt,
        runtime=heatmap_runtime_min,
    params:
        spec=model_spec,
        options=heatmap_options,
        zero_shot=lambda wildcards: (
            zero_shot_prompts(wildcards) if wildcards.setting == "zs" else None
        ),
        seed=config["seed"],
    script:
        "../../scripts/heatmaps.py"


def comparison_settings(wildcards):
    return [
        s for d, m, s in HEATMAP_JOBS if d == wildcards.dataset and m == wildcards.model
    ]


rule heatmap_comparison:
    # The paper's figure: the same annotated images under each setting's map.
    input:
        manifest=PATHS["manifest"],
        maps_dirs=lambda wildcards: [
            PATHS["heatmap_maps"].format(setting=s, **wildcards)
            for s in comparison_settings(wildcards)
        ],
    output:
        report(
            PATHS["heatmap_comparison"],
            caption="../report/heatmap.rst",
            category="Grad-CAM",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "model": "{model}"},
        ),
    log:
        log_path("heatmap_comparison", "{dataset}/{model}"),
    localrule: True
    conda:
        "../../envs/finetune.yaml"
    params:
        settings=comparison_settings,
    script:
        "../../scripts/heatmap_comparison.py"


def heatmap_scores():
    return [
        PATHS["heatmap_scores"].format(dataset=d, model=m, setting=s)
        for d, m, s in HEATMAP_JOBS
    ]


def heatmap_targets():
    targets = [
        PATHS["heatmap_maps"].format(dataset=d, model=m, setting=s)
        for d, m, s in HEATMAP_JOBS
    ] + heatmap_scores()
    pairs = sorted({(d, m) for d, m, _ in HEATMAP_JOBS})
    targets += [
        PATHS["heatmap_comparison"].format(dataset=d, model=m)
        for d, m in pairs
        if len([1 for j in HEATMAP_JOBS if j[:2] == (d, m)]) >= 2
    ]
    return targets


TARGET_FUNCTIONS.append(heatmap_targets)
