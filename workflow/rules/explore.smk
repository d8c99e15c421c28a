# The embedding explorer: thumbnails once per dataset, a browser page of one UMAP cell per (dataset, model), an index.


rule explore_thumbnails:
    input:
        manifest=plan.paths["manifest"],
    output:
        directory(plan.paths["explore_thumbnails"]),
    log:
        plan.log("explore_thumbnails", "{dataset}"),
    benchmark:
        plan.benchmark("explore_thumbnails", "{dataset}")
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=plan.resources.cpu_mem_mb,
        runtime=plan.resources.cpu_runtime_min,
    params:
        thumbnails=plan.explore.thumbnail_params,
    script:
        "../../scripts/explore_thumbnails.py"


rule explore_page:
    input:
        unpack(plan.explore.page_inputs),
    output:
        plan.paths["explore_page"],
    log:
        plan.log("explore_page", "{dataset}/{model}"),
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        page=plan.explore.page_params,
    script:
        "../../scripts/explore_page.py"


rule explore_index:
    input:
        plan.explore.pages(),
    output:
        report(
            plan.paths["explore_index"],
            caption="../report/explore.rst",
            category="Embedding explorer",
        ),
    log:
        plan.log("explore_index", "index"),
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        entries=plan.explore.index_entries(),
    script:
        "../../scripts/explore_index.py"
