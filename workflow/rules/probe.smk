# Linear probes on cached embeddings, the poster's (seed 002) LinearSVC protocol.


rule linear_probe:
    input:
        manifest=PATHS["manifest"],
        embeddings=PATHS["embedding"],
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
        positive_label=lambda wildcards: config["datasets"][wildcards.dataset].get(
            "positive_label"
        ),
    script:
        "../../scripts/linear_probe.py"
