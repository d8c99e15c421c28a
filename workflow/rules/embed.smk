# (dataset, model) -> one cached embedding table: the only stage that runs a model on every image.


rule check_model:
    # Offline check of the model spec (registry name, pretrained tag, checkpoint file) on the
    # submitting machine, so a typo fails in seconds instead of after a wait in a GPU queue.
    output:
        plan.paths["model_check"],
    log:
        plan.log("check_model", "{model}"),
    localrule: True
    conda:
        "../../envs/embed.yaml"
    params:
        spec=plan.model_spec,
    script:
        "../../scripts/check_model.py"


rule embed:
    input:
        manifest=plan.paths["manifest"],
        check=plan.paths["model_check"],
        weights=plan.model_input_files,
    output:
        plan.paths["embedding"],
    log:
        plan.log("embed", "{dataset}/{model}"),
    benchmark:
        plan.benchmark("embed", "{dataset}/{model}")
    conda:
        "../../envs/embed.yaml"
    threads: 4
    resources:
        gpu=1,
        mem_mb=plan.resources.gpu_mem_mb,
        runtime=plan.resources.gpu_runtime_min,
    params:
        # what the numbers depend on; runtime knobs (device, batch size, workers) are read from
        # config["embedding"] in the script so that changing them re-runs nothing
        spec=plan.model_spec,
        format_version=plan.embedding_format_version,
    script:
        "../../scripts/embed.py"
