# Nuisance probes (vlmprobe.nuisance.probes): what an embedding encodes besides the diagnosis -- the meta_* columns a
# dataset names in `nuisances` -- with chance levels and variance shares, the UMAP grid coloured by each
# nuisance, and the shortcut-sensitivity curve of a synthetic-cxr `shortcut` marker. Cached tables only.


rule nuisance_probe:
    input:
        manifest=plan.paths["manifest"],
        embeddings=plan.paths["embedding"],
    output:
        plan.paths["nuisance"],
    log:
        plan.log("nuisance_probe", "{dataset}/{model}"),
    benchmark:
        plan.benchmark("nuisance_probe", "{dataset}/{model}")
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
        nuisances=plan.nuisance_columns,
        n_permutations=plan.nuisance_permutations,
    script:
        "../../scripts/nuisance_probe.py"


rule shortcut_curve:
    input:
        manifest=plan.paths["manifest"],
        embeddings=plan.paths["embedding"],
    output:
        plan.paths["shortcut_curve"],
    log:
        plan.log("shortcut_curve", "{dataset}/{model}"),
    benchmark:
        plan.benchmark("shortcut_curve", "{dataset}/{model}")
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
        finding=plan.shortcut_finding,
        rates=plan.shortcut_rates,
        repeats=plan.shortcut_repeats,
    script:
        "../../scripts/shortcut_curve.py"


rule nuisance_umap:
    input:
        manifest=plan.paths["manifest"],
        coords=plan.paths["umap_coords"],
        quality=plan.paths["umap_quality"],
    output:
        report(
            plan.paths["nuisance_umap"],
            caption="../report/nuisance_umap.rst",
            category="Nuisance",
            subcategory="{dataset}",
            labels={
                "dataset": "{dataset}",
                "model": "{model}",
                "coloured by": "{nuisance}",
            },
        ),
    log:
        plan.log("nuisance_umap", "{dataset}/{model}_{nuisance}"),
    group:
        "analysis"
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=plan.resources.cpu_mem_mb,
        runtime=plan.resources.cpu_runtime_min,
    params:
        seed=plan.seed,
    script:
        "../../scripts/nuisance_umap.py"


rule summary_nuisance:
    input:
        results=plan.nuisance_results(),
    output:
        table=plan.paths["summary_nuisance"],
        csv=plan.paths["summary_nuisance_csv"],
        markdown=plan.paths["summary_nuisance_md"],
        html=report(
            plan.paths["summary_nuisance_html"],
            caption="../report/nuisance.rst",
            category="Nuisance",
            subcategory="Summary",
        ),
        figure=report(
            plan.paths["summary_nuisance_png"],
            caption="../report/nuisance.rst",
            category="Nuisance",
            subcategory="Summary",
        ),
    log:
        plan.log("summary_nuisance", "summary"),
    localrule: True
    conda:
        "../../envs/summary.yaml"
    script:
        "../../scripts/summary_nuisance.py"


rule summary_shortcut:
    input:
        results=plan.shortcut_results(),
    output:
        table=plan.paths["summary_shortcut"],
        csv=plan.paths["summary_shortcut_csv"],
        markdown=plan.paths["summary_shortcut_md"],
        figure=report(
            plan.paths["summary_shortcut_png"],
            caption="../report/shortcut_curve.rst",
            category="Nuisance",
            subcategory="Summary",
        ),
    log:
        plan.log("summary_shortcut", "summary"),
    localrule: True
    conda:
        "../../envs/summary.yaml"
    script:
        "../../scripts/summary_shortcut.py"
