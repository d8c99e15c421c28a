# Six further readings of each cached embedding table (vlmprobe.probes): DINO's weighted kNN, SimpleShot few-shot,
# logistic regression tuned by CV on the training folds, subgroup gaps, PathoROB's robustness index, and across
# models the rank stability of every probe. Cached tables only; the linear probe's split and folds.


rule probes:
    input:
        manifest=plan.paths["manifest"],
        embeddings=plan.paths["embedding"],
        groups=plan.group_split_input,
    output:
        plan.paths["probes"],
        **plan.probes.prediction_outputs(),
    log:
        plan.log("probes", "{dataset}/{model}"),
    benchmark:
        plan.benchmark("probes", "{dataset}/{model}")
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
        settings=plan.probes.settings,
        columns=plan.probes.columns,
    script:
        "../../scripts/probes.py"


rule summary_probes:
    input:
        results=plan.probes.results(),
        linear_probe=plan.probes.linear_probe_results(),
    output:
        table=plan.paths["summary_probes"],
        csv=plan.paths["summary_probes_csv"],
        markdown=plan.paths["summary_probes_md"],
        html=report(
            plan.paths["summary_probes_html"],
            caption="../report/probes.rst",
            category="Probes",
            subcategory="Summary",
        ),
        figure=report(
            plan.paths["summary_probes_png"],
            caption="../report/probes.rst",
            category="Probes",
            subcategory="Summary",
        ),
        few_shot=report(
            plan.paths["summary_probes_few_shot_png"],
            caption="../report/probes_few_shot.rst",
            category="Probes",
            subcategory="Summary",
        ),
        ranks=plan.paths["summary_probes_ranks_csv"],
    log:
        plan.log("summary_probes", "summary"),
    localrule: True
    conda:
        "../../envs/summary.yaml"
    script:
        "../../scripts/summary_probes.py"
