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
        spec=manifest_spec,
        seed=config["seed"],
        split={  # the default split protocol adds nothing, so manifests made before protocols existed stay valid
            key: value
            for key, value in config["split"].items()
            if (key, value) != ("protocol", "vlmprobe")
        },
        data_dir=lambda wildcards: PATHS["dataset_dir"].format(
            dataset=wildcards.dataset
        ),
    script:
        "../../scripts/manifest.py"


rule group_split:
    # a dataset's `group:` column -> its group-aware split, beside the manifest (see vlmprobe.datasets.manifest)
    input:
        manifest=PATHS["manifest"],
    output:
        PATHS["group_split"],
    log:
        log_path("group_split", "{dataset}"),
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        column=lambda wildcards: config["datasets"][wildcards.dataset]["group"],
    script:
        "../../scripts/group_split.py"


TARGET_FUNCTIONS.append(lambda: expand(PATHS["group_split"], dataset=GROUPED_DATASETS))
