# The multi-label study (seeds 000/001, Sadman et al. 2025): per (dataset, model) up to three settings --
# zero-shot (zs), linear probe (lp) and full fine-tuning (ft) -- each writing test predictions, then one
# metrics job per setting (bootstrap intervals); summary_multilabel (aggregate.smk) makes the table.
# zs and lp read the cached embedding table (no image is embedded again); ft trains on the images [GPU].
from vlmprobe.errors import VlmprobeError
from vlmprobe.models import family_of
from vlmprobe.multilabel.zero_shot import NO_TEXT_TOWER


def supports_finetuning(spec):
    return family_of("model", spec).trainable


def supports_zero_shot(spec):
    return family_of("model", spec).has_text_tower

PATHS.update(
    {
        "multilabel_predictions": "results/multilabel/{dataset}/{model}/{setting}.predictions.parquet",
        "multilabel_metrics": "results/multilabel/{dataset}/{model}/{setting}.json",
        "multilabel_lp_head": "results/multilabel/{dataset}/{model}/lp.head.safetensors",
        "finetune_encoder": "results/finetune/{dataset}/{model}/encoder.safetensors",
        "finetune_head": "results/finetune/{dataset}/{model}/head.safetensors",
        "finetune_info": "results/finetune/{dataset}/{model}/finetune.json",
        "finetune_embedding": "results/finetune/{dataset}/{model}/embeddings.parquet",
        "summary_multilabel": "results/summary/multilabel.parquet",
        "summary_multilabel_csv": "results/summary/multilabel.csv",
        "summary_multilabel_md": "results/summary/multilabel.md",
    }
)
MULTILABEL = config["multilabel"]
# vlmprobe (ours) or sadman2025 (the paper's notebook), vlmprobe.multilabel.protocols
PROTOCOL = MULTILABEL["protocol"]
# A paper protocol travels in the jobs' params; the default adds nothing, so results made before protocols existed stay valid.
PROTOCOL_PARAMS = (
    {}
    if PROTOCOL == "vlmprobe"
    else {
        "protocol": PROTOCOL,
        "validation_fold": MULTILABEL["finetune"]["validation_fold"],
    }
)
SETTINGS = ("zs", "lp", "ft")


def setting_path(key, setting):
    return PATHS[key].replace("{setting}", setting)


def _named(key, names, known, what):
    unknown = [name for name in names if name not in known]
    if unknown:
        raise VlmprobeError(
            f"`multilabel: {key}` names {what} {unknown} that config.yaml does not define.",
            f"use names from `{what}s:`: {known}.",
        )
    return list(names)


STUDY_DATASETS = (
    []
    if not MULTILABEL["enabled"]
    else (
        _named("datasets", MULTILABEL["datasets"], DATASETS, "dataset")
        if MULTILABEL["datasets"] is not None
        else MULTILABEL_DATASETS
    )
)
FINETUNE_MODELS = (
    [m for m in MODELS if supports_finetuning(config["models"][m])]
    if MULTILABEL["finetune"]["models"] is None
    else _named("finetune: models", MULTILABEL["finetune"]["models"], MODELS, "model")
)
for _model in FINETUNE_MODELS:
    if not supports_finetuning(config["models"][_model]):
        raise VlmprobeError(
            f"`multilabel: finetune: models` lists {_model!r}, whose family {config['models'][_model].get('family')!r} has no trainable image tower.",
            "fine-tune only open_clip, timm or torchvision models.",
        )


def setting_skip_reason(model, setting):
    """Why a (model, setting) of the study does not run, or None when it does."""
    block = {"zs": "zero_shot", "lp": "linear_probe", "ft": "finetune"}[setting]
    if not MULTILABEL[block]["enabled"]:
        return f"`multilabel: {block}: enabled: false`"
    if setting == "zs" and not supports_zero_shot(config["models"][model]):
        return NO_TEXT_TOWER
    if setting == "ft" and model not in FINETUNE_MODELS:
        if not supports_finetuning(config["models"][model]):
            return f"family {config['models'][model].get('family')!r} has no trainable image tower"
        return "not listed in `multilabel: finetune: models`"
    return None


def multilabel_results():
    return [
        PATHS["multilabel_metrics"].format(
            dataset=dataset, model=model, setting=setting
        )
        for dataset in STUDY_DATASETS
        for model in MODELS
        for setting in SETTINGS
        if setting_skip_reason(model, setting) is None
    ]


def multilabel_skipped():
    return [
        {
            "dataset": dataset,
            "model": model,
            "setting": setting,
            "protocol": PROTOCOL,
            "reason": reason,
        }
        for dataset in STUDY_DATASETS
        for model in MODELS
        for setting in SETTINGS
        if (reason := setting_skip_reason(model, setting)) is not None
    ]


def zero_shot_prompts(wildcards):
    block = MULTILABEL["zero_shot"]
    return {
        "templates": list(
            block["dataset_templates"].get(wildcards.dataset, block["templates"])
        ),
        "label_text": dict(block["label_text"].get(wildcards.dataset, {})),
    }


def metrics_embeddings(wildcards):
    """zs and lp are scored on the frozen embeddings, ft on its own fine-tuned ones."""
    return (
        PATHS["finetune_embedding"] if wildcards.setting == "ft" else PATHS["embedding"]
    )


def runtime_free(
    block, runtime_keys=("enabled", "models", "device", "num_workers", "progress")
):
    return {key: value for key, value in block.items() if key not in runtime_keys}


rule multilabel_lp:
    input:
        manifest=PATHS["manifest"],
        embeddings=PATHS["embedding"],
    output:
        predictions=setting_path("multilabel_predictions", "lp"),
        head=PATHS["multilabel_lp_head"],
    log:
        log_path("multilabel_lp", "{dataset}/{model}"),
    benchmark:
        benchmark_path("multilabel_lp", "{dataset}/{model}")
    group:
        "analysis"
    conda:
        "../../envs/analysis.yaml"
    threads: 2
    resources:
        mem_mb=cpu_mem_mb,
        runtime=cpu_runtime_min,
    params:
        spec=model_spec,
        settings={**runtime_free(MULTILABEL["linear_probe"]), **PROTOCOL_PARAMS},
    script:
        "../../scripts/multilabel_lp.py"


rule zero_shot:
    # Only the text tower runs (a few prompts per class, on the CPU): the images come from the cached table.
    input:
        manifest=PATHS["manifest"],
        embeddings=PATHS["embedding"],
        check=PATHS["model_check"],
        weights=model_weight_inputs,
    output:
        predictions=setting_path("multilabel_predictions", "zs"),
    log:
        log_path("zero_shot", "{dataset}/{model}"),
    benchmark:
        benchmark_path("zero_shot", "{dataset}/{model}")
    group:
        "analysis"
    conda:
        "../../envs/finetune.yaml"  # torch + open_clip for the text tower, scikit-learn + polars for tables
    threads: 2
    resources:
        mem_mb=cpu_mem_mb,
        runtime=cpu_runtime_min,
    params:
        spec=model_spec,
        prompts=zero_shot_prompts,
        decision={
            "rule": MULTILABEL["zero_shot"]["rule"],
            "threshold": MULTILABEL["zero_shot"]["threshold"],
            **PROTOCOL_PARAMS,
        },
    script:
        "../../scripts/zero_shot.py"


rule finetune:
    # Resumable: a killed job continues after its last finished epoch (checkpoints in results/finetune/.../resume/).
    input:
        manifest=PATHS["manifest"],
        check=PATHS["model_check"],
        weights=model_weight_inputs,
    output:
        encoder=PATHS["finetune_encoder"],
        head=PATHS["finetune_head"],
        info=PATHS["finetune_info"],
        embeddings=PATHS["finetune_embedding"],
        predictions=setting_path("multilabel_predictions", "ft"),
    log:
        log_path("finetune", "{dataset}/{model}"),
    benchmark:
        benchmark_path("finetune", "{dataset}/{model}")
    conda:
        "../../envs/finetune.yaml"
    threads: 4
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb,
        runtime=finetune_runtime_min,
    params:
        spec=model_spec,
        settings={**runtime_free(MULTILABEL["finetune"]), **PROTOCOL_PARAMS},
        seed=config["seed"],
    script:
        "../../scripts/finetune.py"


rule multilabel_metrics:
    input:
        manifest=PATHS["manifest"],
        predictions=PATHS["multilabel_predictions"],
        embeddings=metrics_embeddings,
    output:
        PATHS["multilabel_metrics"],
    log:
        log_path("multilabel_metrics", "{dataset}/{model}/{setting}"),
    benchmark:
        benchmark_path("multilabel_metrics", "{dataset}/{model}/{setting}")
    wildcard_constraints:
        setting="zs|lp|ft",
    group:
        "analysis"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=cpu_mem_mb,
        runtime=cpu_runtime_min,
    params:
        bootstrap={**MULTILABEL["bootstrap"], "seed": config["seed"]},
        expected_spec=lambda wildcards: (
            None if wildcards.setting == "ft" else config["models"][wildcards.model]
        ),
    script:
        "../../scripts/multilabel_metrics.py"
