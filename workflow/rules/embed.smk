# (dataset, model) -> one cached embedding table: the only stage that runs a model on every image.


rule check_model:
    # Offline check of the model spec (registry name, pretrained tag, checkpoint file) on the
    # submitting machine, so a typo fails in seconds instead of after a wait in a GPU queue.
    output:
        PATHS["model_check"],
    log:
        log_path("check_model", "{model}"),
    localrule: True
    conda:
        "../../envs/embed.yaml"
    params:
        spec=model_spec,
    script:
        "../../scripts/check_model.py"


rule embed:
    input:
        manifest=PATHS["manifest"],
        check=PATHS["model_check"],
        weights=model_weight_inputs,
    output:
        PATHS["embedding"],
    log:
        log_path("embed", "{dataset}/{model}"),
    benchmark:
        benchmark_path("embed", "{dataset}/{model}")
    conda:
        "../../envs/embed.yaml"
    threads: 4
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb,
        runtime=gpu_runtime_min,
    params:
        # what the numbers depend on; runtime knobs (device, batch size, workers) are read from
        # config["embedding"] in the script so that changing them re-runs nothing
        spec=model_spec,
        format_version=FORMAT_VERSION,
    script:
        "../../scripts/embed.py"


TARGET_FUNCTIONS.append(
    lambda: expand(PATHS["embedding"], dataset=DATASETS, model=MODELS)
)
