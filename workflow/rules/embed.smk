# (dataset, model) -> one cached embedding table: the only stage that runs a model on every image,
# reading each dataset's pixels from one cache per geometry where the model's preprocessing splits exactly.


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


rule pixel_cache:
    # A dataset decoded once per geometry (resize, crop) into uint8 pixels that every model with that
    # geometry reads: a CPU job, so GPU jobs spend no time decoding.
    input:
        manifest=plan.paths["manifest"],
    output:
        pixels=plan.paths["pixel_cache"],
        index=plan.paths["pixel_index"],
    log:
        plan.log("pixel_cache", "{dataset}/{geometry}"),
    benchmark:
        plan.benchmark("pixel_cache", "{dataset}/{geometry}")
    conda:
        "../../envs/embed.yaml"
    threads: 4
    resources:
        mem_mb=2048,
        runtime=plan.pixel_caches.runtime_min,
    params:
        geometry=plan.pixel_caches.geometry,
    script:
        "../../scripts/pixel_cache.py"


rule embed:
    input:
        manifest=plan.paths["manifest"],
        # ancient: a cache made for a model added later leaves the tables already made from it valid
        pixel_cache=ancient(plan.pixel_caches.embed_pixels),
        pixel_index=ancient(plan.pixel_caches.embed_pixel_index),
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
