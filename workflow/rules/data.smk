# Datasets -> one Parquet manifest each (splits and folds included). Never depends on a model.


rule manifest:
    output:
        PATHS["manifest"],
    log:
        log_path("manifest", "{dataset}"),
    benchmark:
        benchmark_path("manifest", "{dataset}")
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        spec=dataset_spec,
        seed=config["seed"],
        split=config["split"],
        data_dir=lambda wildcards: PATHS["dataset_dir"].format(
            dataset=wildcards.dataset
        ),
    script:
        "../../scripts/manifest.py"
