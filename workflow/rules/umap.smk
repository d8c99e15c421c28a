# UMAP grids over n_neighbors x min_dist (cosine), one job per embedding table (not one per cell).

PATHS.update(
    {
        "umap_coords": "results/umap/{dataset}/{model}.parquet",
        "umap_quality": "results/umap/{dataset}/{model}_quality.parquet",
        "umap_figure": "results/umap/{dataset}/{model}.png",
        "umap_models": "results/umap/{dataset}/models.png",
        "summary_umap": "results/summary/umap_quality.parquet",
        "summary_umap_csv": "results/summary/umap_quality.csv",
        "summary_umap_md": "results/summary/umap_quality.md",
        "summary_umap_html": "results/summary/umap_quality.html",
    }
)


def umap_grid_params(wildcards):
    """The grid of this dataset: the config's `umap` block, overridden by the dataset's own `umap` block."""
    grid = {
        key: config["umap"][key]
        for key in ("n_neighbors", "min_dist", "colour_by", "trust_subsample")
    }
    grid.update(config["datasets"][wildcards.dataset].get("umap", {}))
    return grid


rule umap_grid:
    input:
        manifest=PATHS["manifest"],
        embeddings=PATHS["embedding"],
    output:
        coords=PATHS["umap_coords"],
        quality=PATHS["umap_quality"],
        figure=report(
            PATHS["umap_figure"],
            caption="../report/umap_grid.rst",
            category="UMAP grids",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "model": "{model}"},
        ),
    log:
        log_path("umap_grid", "{dataset}/{model}"),
    benchmark:
        benchmark_path("umap_grid", "{dataset}/{model}")
    group:
        "analysis"
    conda:
        "../../envs/analysis.yaml"
    threads: 8
    resources:
        mem_mb=cpu_mem_mb,
        runtime=cpu_runtime_min,
    params:
        grid=umap_grid_params,
        spec=model_spec,
        seed=config["seed"],
    script:
        "../../scripts/umap_grid.py"


rule umap_models:
    input:
        manifest=PATHS["manifest"],
        coords=expand(PATHS["umap_coords"], model=MODELS, allow_missing=True),
        quality=expand(PATHS["umap_quality"], model=MODELS, allow_missing=True),
    output:
        report(
            PATHS["umap_models"],
            caption="../report/umap_grid.rst",
            category="UMAP grids",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "model": "all models"},
        ),
    log:
        log_path("umap_models", "{dataset}"),
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        models=MODELS,
        cell=lambda wildcards: config["umap"]["summary_cell"],
        colour_by=lambda wildcards: umap_grid_params(wildcards)["colour_by"],
    script:
        "../../scripts/umap_models.py"


def umap_targets():
    if not config["umap"]["enabled"]:
        return []
    return (
        expand(PATHS["umap_figure"], dataset=DATASETS, model=MODELS)
        + expand(PATHS["umap_models"], dataset=DATASETS)
        + [
            PATHS[key]
            for key in (
                "summary_umap",
                "summary_umap_csv",
                "summary_umap_md",
                "summary_umap_html",
            )
        ]
    )


TARGET_FUNCTIONS.append(umap_targets)
