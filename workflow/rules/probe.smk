# Linear probes on cached embeddings, the poster's (seed 002) LinearSVC protocol.


rule linear_probe:
    input:
        manifest=PATHS["manifest"],
        embeddings=PATHS["embedding"],
        groups=group_split_input,
    output:
        PATHS["linear_probe"],
        predictions=PATHS["linear_probe_predictions"],
    log:
        log_path("linear_probe", "{dataset}/{model}"),
    benchmark:
        benchmark_path("linear_probe", "{dataset}/{model}")
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
        # a dataset's `fscore:` travels with its positive label, only where set (older results stay valid)
        positive_label=lambda wildcards: (
            {
                "positive_label": config["datasets"][wildcards.dataset].get(
                    "positive_label"
                ),
                "fscore": config["datasets"][wildcards.dataset]["fscore"],
            }
            if "fscore" in config["datasets"][wildcards.dataset]
            else config["datasets"][wildcards.dataset].get("positive_label")
        ),
    script:
        "../../scripts/linear_probe.py"
