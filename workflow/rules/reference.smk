# The papers beside ours: active only when the config names a reference (the study presets do).


rule reference_linear_probe:
    input:
        ours=plan.paths["summary_linear_probe"],
    output:
        csv=report(
            plan.paths["reference_linear_probe_csv"],
            caption="../report/summary_tables.rst",
            category="Summary",
        ),
        markdown=plan.paths["reference_linear_probe_md"],
    log:
        plan.log("reference_linear_probe", "summary"),
    localrule: True
    conda:
        "../../envs/summary.yaml"
    params:
        kind="linear_probe",
        block=plan.reference_block("linear_probe"),
        datasets=plan.multiclass_datasets,
        models=plan.models,
    script:
        "../../scripts/reference.py"


rule reference_multilabel:
    input:
        plan.reference_multilabel_input(),
    output:
        csv=report(
            plan.paths["reference_multilabel_csv"],
            caption="../report/summary_tables.rst",
            category="Summary",
        ),
        markdown=plan.paths["reference_multilabel_md"],
    log:
        plan.log("reference_multilabel", "summary"),
    localrule: True
    conda:
        "../../envs/summary.yaml"
    params:
        kind="settings",
        block=plan.reference_block("multilabel"),
        missing_reason=plan.reference_missing_reason(),
    script:
        "../../scripts/reference.py"
