# Summary tables and figures across models and datasets: cheap, re-run whenever anything is added.


rule summary_linear_probe:
    input:
        results=linear_probe_results(),
    output:
        table=PATHS["summary_linear_probe"],
        csv=PATHS["summary_linear_probe_csv"],
        markdown=PATHS["summary_linear_probe_md"],
        heatmap=PATHS["summary_linear_probe_png"],
    params:
        skipped_multilabel=MULTILABEL_DATASETS,
    log:
        log_path("summary_linear_probe", "summary"),
    localrule: True
    script:
        "../../scripts/summary_linear_probe.py"


def linear_probe_summary_targets():
    if not (config["linear_probe"]["enabled"] and MULTICLASS_DATASETS):
        return []
    return [PATHS[key] for key in ("summary_linear_probe", "summary_linear_probe_csv", "summary_linear_probe_md", "summary_linear_probe_png")]


TARGET_FUNCTIONS.append(linear_probe_summary_targets)
