# Linear probes on cached embeddings, the poster's (seed 002) LinearSVC protocol, and their summaries.


rule linear_probe:
    input:
        manifest=plan.paths["manifest"],
        embeddings=plan.paths["embedding"],
        groups=plan.group_split_input,
    output:
        plan.paths["linear_probe"],
        predictions=plan.paths["linear_probe_predictions"],
    log:
        plan.log("linear_probe", "{dataset}/{model}"),
    benchmark:
        plan.benchmark("linear_probe", "{dataset}/{model}")
    group:
        "analysis"
    conda:
        "../../envs/analysis.yaml"
    threads: 2
    resources:
        mem_mb=plan.resources.cpu_mem_mb,
        runtime=plan.resources.cpu_runtime_min,
    params:
        spec=plan.model_spec,
        positive_label=plan.positive_label,
    script:
        "../../scripts/linear_probe.py"


rule summary_linear_probe:
    input:
        results=plan.linear_probe_results(),
    output:
        table=plan.paths["summary_linear_probe"],
        csv=plan.paths["summary_linear_probe_csv"],
        markdown=plan.paths["summary_linear_probe_md"],
        html=report(
            plan.paths["summary_linear_probe_html"],
            caption="../report/summary_tables.rst",
            category="Summary tables",
            subcategory="Linear probe",
        ),
        heatmap=report(
            plan.paths["summary_linear_probe_png"],
            caption="../report/summary_heatmap.rst",
            category="Heatmaps",
            subcategory="Linear probe",
        ),
    log:
        plan.log("summary_linear_probe", "summary"),
    localrule: True
    conda:
        "../../envs/summary.yaml"
    params:
        skipped_multilabel=plan.multilabel_datasets,
    script:
        "../../scripts/summary_linear_probe.py"


rule summary_group_gap:
    # Identity leakage: only when a multi-class dataset names a `group:` column.
    input:
        table=plan.paths["summary_linear_probe"],
    output:
        figure=report(
            plan.paths["summary_group_gap_png"],
            caption="../report/group_gap.rst",
            category="Heatmaps",
            subcategory="Linear probe",
        ),
    log:
        plan.log("summary_group_gap", "summary"),
    localrule: True
    conda:
        "../../envs/summary.yaml"
    script:
        "../../scripts/summary_group_gap.py"
