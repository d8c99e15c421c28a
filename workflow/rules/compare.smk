# Paired model comparisons (vlmprobe.compare.paired): every pair of models of a dataset on the same test samples,
# paired bootstrap intervals, exact McNemar / permutation tests, Holm per dataset and metric.
PATHS.update(
    {
        f"compare_{kind}{suffix}": f"results/summary/compare_{kind}.{extension}"
        for kind in ("linear_probe", "multilabel")
        for suffix, extension in (
            ("", "parquet"),
            ("_csv", "csv"),
            ("_md", "md"),
            ("_html", "html"),
            ("_png", "png"),
        )
    }
)
COMPARE = config["compare"]


def compare_settings():
    return {
        key: COMPARE[key]
        for key in ("n_resamples", "n_permutations", "confidence", "alpha")
    } | {"seed": config["seed"]}


def compare_linear_probe_entries():
    if not (COMPARE["enabled"] and len(MODELS) >= 2):
        return []
    return [
        {
            "dataset": dataset,
            "model": model,
            "predictions": PATHS["linear_probe_predictions"].format(
                dataset=dataset, model=model
            ),
            "result": PATHS["linear_probe"].format(dataset=dataset, model=model),
        }
        for dataset in MULTICLASS_DATASETS
        if config["linear_probe"]["enabled"]
        for model in MODELS
    ]


def compare_multilabel_entries():
    if not COMPARE["enabled"]:
        return []
    entries = [
        {
            "dataset": dataset,
            "model": model,
            "setting": setting,
            "predictions": PATHS["multilabel_predictions"].format(
                dataset=dataset, model=model, setting=setting
            ),
            "result": PATHS["multilabel_metrics"].format(
                dataset=dataset, model=model, setting=setting
            ),
        }
        for dataset in STUDY_DATASETS
        for model in MODELS
        for setting in SETTINGS
        if setting_skip_reason(model, setting) is None
    ]
    return entries if len(entries) >= 2 else []


def entry_files(entries):
    return [entry[key] for entry in entries for key in ("predictions", "result")]


def compare_outputs(kind):
    return dict(
        table=PATHS[f"compare_{kind}"],
        csv=PATHS[f"compare_{kind}_csv"],
        markdown=PATHS[f"compare_{kind}_md"],
        html=report(
            PATHS[f"compare_{kind}_html"],
            caption="../report/compare.rst",
            category="Model comparisons",
            subcategory=kind.replace("_", " "),
        ),
        figure=report(
            PATHS[f"compare_{kind}_png"],
            caption="../report/compare.rst",
            category="Model comparisons",
            subcategory=kind.replace("_", " "),
        ),
    )


rule compare_linear_probe:
    input:
        entry_files(compare_linear_probe_entries()),
    output:
        **compare_outputs("linear_probe"),
    log:
        log_path("compare_linear_probe", "summary"),
    benchmark:
        benchmark_path("compare_linear_probe", "summary")
    localrule: True
    conda:
        "../../envs/summary.yaml"
    threads: 1
    params:
        entries=compare_linear_probe_entries(),
        settings=compare_settings(),
    script:
        "../../scripts/compare_linear_probe.py"


rule compare_multilabel:
    input:
        entry_files(compare_multilabel_entries()),
        manifests=expand(PATHS["manifest"], dataset=STUDY_DATASETS),
    output:
        **compare_outputs("multilabel"),
    log:
        log_path("compare_multilabel", "summary"),
    benchmark:
        benchmark_path("compare_multilabel", "summary")
    localrule: True
    conda:
        "../../envs/summary.yaml"
    threads: 1
    params:
        entries=compare_multilabel_entries(),
        manifests={
            dataset: PATHS["manifest"].format(dataset=dataset)
            for dataset in STUDY_DATASETS
        },
        settings=compare_settings(),
    script:
        "../../scripts/compare_multilabel.py"


def compare_targets():
    targets = []
    for kind, entries in (
        ("linear_probe", compare_linear_probe_entries()),
        ("multilabel", compare_multilabel_entries()),
    ):
        if entries:
            targets += [
                PATHS[f"compare_{kind}{suffix}"]
                for suffix in ("", "_csv", "_md", "_html", "_png")
            ]
    return targets


TARGET_FUNCTIONS.append(compare_targets)
