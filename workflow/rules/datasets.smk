# Datasets -> one Parquet manifest each (splits and folds included). Never depends on a model.


rule manifest:
    output:
        plan.paths["manifest"],
    log:
        plan.log("manifest", "{dataset}"),
    benchmark:
        plan.benchmark("manifest", "{dataset}")
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        spec=plan.manifest_spec,
        seed=plan.seed,
        split=plan.split_params,
        data_dir=plan.dataset_dir,
    script:
        "../../scripts/manifest.py"


rule group_split:
    # a dataset's `group:` column -> its group-aware split, beside the manifest (see vlmprobe.datasets.manifest)
    input:
        manifest=plan.paths["manifest"],
    output:
        plan.paths["group_split"],
    log:
        plan.log("group_split", "{dataset}"),
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        column=plan.group_column,
    script:
        "../../scripts/group_split.py"
