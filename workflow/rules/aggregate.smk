# Summary tables and figures across models and datasets: cheap, re-run whenever anything is added.


rule summary_linear_probe:
    input:
        results=linear_probe_results(),
    output:
        table=PATHS["summary_linear_probe"],
        csv=PATHS["summary_linear_probe_csv"],
        markdown=PATHS["summary_linear_probe_md"],
        html=report(
            PATHS["summary_linear_probe_html"],
            caption="../report/summary_tables.rst",
            category="Summary tables",
            subcategory="Linear probe",
        ),
        heatmap=report(
            PATHS["summary_linear_probe_png"],
            caption="../report/summary_heatmap.rst",
            category="Heatmaps",
            subcategory="Linear probe",
        ),
    log:
        log_path("summary_linear_probe", "summary"),
    localrule: True
    conda:
        "../../envs/summary.yaml"
    params:
        skipped_multilabel=MULTILABEL_DATASETS,
    script:
        "../../scripts/summary_linear_probe.py"


def linear_probe_summary_targets():
    if not (config["linear_probe"]["enabled"] and MULTICLASS_DATASETS):
        return []
    return [
        PATHS[key]
        for key in (
            "summary_linear_probe",
            "summary_linear_probe_csv",
            "summary_linear_probe_md",
            "summary_linear_probe_html",
            "summary_linear_probe_png",
        )
    ]


TARGET_FUNCTIONS.append(linear_probe_summary_targets)


# --- Identity leakage: only when a multi-class dataset names a `group:` column. ---
PATHS["summary_group_gap_png"] = "results/summary/linear_probe_group_gap.png"


rule summary_group_gap:
    input:
        table=PATHS["summary_linear_probe"],
    output:
        figure=report(
            PATHS["summary_group_gap_png"],
            caption="../report/group_gap.rst",
            category="Heatmaps",
            subcategory="Linear probe",
        ),
    log:
        log_path("summary_group_gap", "summary"),
    localrule: True
    conda:
        "../../envs/summary.yaml"
    script:
        "../../scripts/summary_group_gap.py"


def group_gap_targets():
    grouped = [d for d in MULTICLASS_DATASETS if config["datasets"][d].get("group")]
    return (
        [PATHS["summary_group_gap_png"]]
        if grouped and linear_probe_summary_targets()
        else []
    )


TARGET_FUNCTIONS.append(group_gap_targets)


# --- The papers beside ours: active only when the config names a reference (the study presets do). ---
PATHS.update(
    {
        "reference_linear_probe_csv": "results/summary/reference/linear_probe.csv",
        "reference_linear_probe_md": "results/summary/reference/linear_probe.md",
        "reference_multilabel_csv": "results/summary/reference/multilabel.csv",
        "reference_multilabel_md": "results/summary/reference/multilabel.md",
    }
)


rule reference_linear_probe:
    input:
        ours=PATHS["summary_linear_probe"],
    output:
        csv=report(
            PATHS["reference_linear_probe_csv"],
            caption="../report/summary_tables.rst",
            category="Summary",
        ),
        markdown=PATHS["reference_linear_probe_md"],
    log:
        log_path("reference_linear_probe", "summary"),
    localrule: True
    conda:
        "../../envs/summary.yaml"
    params:
        kind="linear_probe",
        block=lambda wildcards: config["reference"]["linear_probe"],
        datasets=MULTICLASS_DATASETS,
        models=MODELS,
    script:
        "../../scripts/reference_compare.py"


def reference_multilabel_input(wildcards):
    # the multi-label stage adds its summary path to PATHS after this file is read, so look it up lazily
    key = config["reference"]["multilabel"]["ours"]
    return [PATHS[key]] if key in PATHS else []


rule reference_multilabel:
    input:
        reference_multilabel_input,
    output:
        csv=report(
            PATHS["reference_multilabel_csv"],
            caption="../report/summary_tables.rst",
            category="Summary",
        ),
        markdown=PATHS["reference_multilabel_md"],
    log:
        log_path("reference_multilabel", "summary"),
    localrule: True
    conda:
        "../../envs/summary.yaml"
    params:
        kind="settings",
        block=lambda wildcards: config["reference"]["multilabel"],
        missing_reason=lambda wildcards: (
            "not run: no result in our summary"
            if config["reference"]["multilabel"]["ours"] in PATHS
            else f"not run: the workflow has no {config['reference']['multilabel']['ours']!r} summary"
        ),
    script:
        "../../scripts/reference_compare.py"


def reference_targets():
    targets = []
    if "linear_probe" in config["reference"] and linear_probe_summary_targets():
        targets += [
            PATHS["reference_linear_probe_csv"],
            PATHS["reference_linear_probe_md"],
        ]
    if "multilabel" in config["reference"]:
        targets += [PATHS["reference_multilabel_csv"], PATHS["reference_multilabel_md"]]
    return targets


TARGET_FUNCTIONS.append(reference_targets)


# --- The multi-label study (multilabel.smk): every setting's metrics in the paper's layout. ---
rule summary_multilabel:
    input:
        results=lambda wildcards: multilabel_results(),
    output:
        table=PATHS["summary_multilabel"],
        csv=PATHS["summary_multilabel_csv"],
        markdown=PATHS["summary_multilabel_md"],
    log:
        log_path("summary_multilabel", "summary"),
    localrule: True
    conda:
        "../../envs/summary.yaml"
    params:
        skipped=lambda wildcards: multilabel_skipped(),
    script:
        "../../scripts/summary_multilabel.py"


def multilabel_summary_targets():
    if not STUDY_DATASETS:
        return []
    return [
        PATHS[key]
        for key in (
            "summary_multilabel",
            "summary_multilabel_csv",
            "summary_multilabel_md",
        )
    ]


TARGET_FUNCTIONS.append(multilabel_summary_targets)


# --- Grad-CAM heatmaps (heatmap.smk): scores against annotations, models x settings per dataset. ---
rule summary_heatmaps:
    input:
        scores=lambda wildcards: heatmap_scores(),
    output:
        table=PATHS["summary_heatmaps"],
        markdown=PATHS["summary_heatmaps_md"],
        figure=PATHS["summary_heatmaps_png"],
    log:
        log_path("summary_heatmaps", "summary"),
    localrule: True
    conda:
        "../../envs/summary.yaml"
    script:
        "../../scripts/summary_heatmaps.py"


def heatmap_summary_targets():
    if not HEATMAP_JOBS:
        return []
    return [
        PATHS[key]
        for key in ("summary_heatmaps", "summary_heatmaps_md", "summary_heatmaps_png")
    ]


TARGET_FUNCTIONS.append(heatmap_summary_targets)


rule summary_umap:
    input:
        quality=expand(PATHS["umap_quality"], dataset=DATASETS, model=MODELS),
    output:
        table=PATHS["summary_umap"],
        csv=PATHS["summary_umap_csv"],
        markdown=PATHS["summary_umap_md"],
        html=report(
            PATHS["summary_umap_html"],
            caption="../report/summary_tables.rst",
            category="Summary tables",
            subcategory="UMAP quality",
        ),
    log:
        log_path("summary_umap", "summary"),
    localrule: True
    conda:
        "../../envs/summary.yaml"
    params:
        tables=[(dataset, model) for dataset in DATASETS for model in MODELS],
    script:
        "../../scripts/summary_umap.py"
