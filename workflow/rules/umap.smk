# UMAP grids over n_neighbors x min_dist (cosine), one job per embedding table (not one per cell), and their summary.


rule umap_grid:
    input:
        manifest=plan.paths["manifest"],
        embeddings=plan.paths["embedding"],
    output:
        coords=plan.paths["umap_coords"],
        quality=plan.paths["umap_quality"],
        figure=report(
            plan.paths["umap_figure"],
            caption="../report/umap_grid.rst",
            category="UMAP grids",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "model": "{model}"},
        ),
    log:
        plan.log("umap_grid", "{dataset}/{model}"),
    benchmark:
        plan.benchmark("umap_grid", "{dataset}/{model}")
    group:
        "analysis"
    conda:
        "../../envs/analysis.yaml"
    threads: 8
    resources:
        mem_mb=plan.resources.cpu_mem_mb,
        runtime=plan.resources.cpu_runtime_min,
    params:
        grid=plan.umap_grid_params,
        spec=plan.model_spec,
        seed=plan.seed,
    script:
        "../../scripts/umap_grid.py"


rule umap_models:
    input:
        manifest=plan.paths["manifest"],
        coords=plan.per_model("umap_coords"),
        quality=plan.per_model("umap_quality"),
    output:
        report(
            plan.paths["umap_models"],
            caption="../report/umap_grid.rst",
            category="UMAP grids",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "model": "all models"},
        ),
    log:
        plan.log("umap_models", "{dataset}"),
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        models=plan.models,
        cell=plan.umap_summary_cell,
        colour_by=plan.umap_colour_by,
    script:
        "../../scripts/umap_models.py"


rule summary_umap:
    input:
        quality=plan.umap_qualities(),
    output:
        table=plan.paths["summary_umap"],
        csv=plan.paths["summary_umap_csv"],
        markdown=plan.paths["summary_umap_md"],
        html=report(
            plan.paths["summary_umap_html"],
            caption="../report/summary_tables.rst",
            category="Summary tables",
            subcategory="UMAP quality",
        ),
    log:
        plan.log("summary_umap", "summary"),
    localrule: True
    conda:
        "../../envs/summary.yaml"
    params:
        tables=plan.umap_tables(),
    script:
        "../../scripts/summary_umap.py"
