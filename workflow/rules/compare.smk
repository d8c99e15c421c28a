# Paired model comparisons (vlmprobe.compare.paired): every pair of models of a dataset on the same test samples,
# paired bootstrap intervals, exact McNemar / permutation tests, Holm per dataset and metric.


rule compare_linear_probe:
    input:
        plan.entry_files(plan.compare_linear_probe_entries()),
    output:
        table=plan.paths["compare_linear_probe"],
        csv=plan.paths["compare_linear_probe_csv"],
        markdown=plan.paths["compare_linear_probe_md"],
        html=report(
            plan.paths["compare_linear_probe_html"],
            caption="../report/compare.rst",
            category="Model comparisons",
            subcategory="linear probe",
        ),
        figure=report(
            plan.paths["compare_linear_probe_png"],
            caption="../report/compare.rst",
            category="Model comparisons",
            subcategory="linear probe",
        ),
    log:
        plan.log("compare_linear_probe", "summary"),
    benchmark:
        plan.benchmark("compare_linear_probe", "summary")
    localrule: True
    conda:
        "../../envs/summary.yaml"
    threads: 1
    params:
        entries=plan.compare_linear_probe_entries(),
        settings=plan.compare_settings,
    script:
        "../../scripts/compare_linear_probe.py"


rule compare_multilabel:
    input:
        plan.entry_files(plan.compare_multilabel_entries()),
        manifests=list(plan.study_manifests().values()),
    output:
        table=plan.paths["compare_multilabel"],
        csv=plan.paths["compare_multilabel_csv"],
        markdown=plan.paths["compare_multilabel_md"],
        html=report(
            plan.paths["compare_multilabel_html"],
            caption="../report/compare.rst",
            category="Model comparisons",
            subcategory="multilabel",
        ),
        figure=report(
            plan.paths["compare_multilabel_png"],
            caption="../report/compare.rst",
            category="Model comparisons",
            subcategory="multilabel",
        ),
    log:
        plan.log("compare_multilabel", "summary"),
    benchmark:
        plan.benchmark("compare_multilabel", "summary")
    localrule: True
    conda:
        "../../envs/summary.yaml"
    threads: 1
    params:
        entries=plan.compare_multilabel_entries(),
        manifests=plan.study_manifests(),
        settings=plan.compare_settings,
    script:
        "../../scripts/compare_multilabel.py"


rule compare_probe:
    # kNN and the tuned logistic probe (vlmprobe.probes): one prediction per test sample (the final model).
    input:
        plan.probes.compare_files,
    output:
        table=plan.paths["compare_probe"],
        csv=plan.paths["compare_probe_csv"],
        markdown=plan.paths["compare_probe_md"],
        html=report(
            plan.paths["compare_probe_html"],
            caption="../report/compare.rst",
            category="Model comparisons",
            subcategory="{probe}",
        ),
        figure=report(
            plan.paths["compare_probe_png"],
            caption="../report/compare.rst",
            category="Model comparisons",
            subcategory="{probe}",
        ),
    log:
        plan.log("compare_probe", "{probe}"),
    benchmark:
        plan.benchmark("compare_probe", "{probe}")
    localrule: True
    conda:
        "../../envs/summary.yaml"
    threads: 1
    params:
        entries=plan.probes.compare_entries,
        settings=plan.compare_settings,
    script:
        "../../scripts/compare_probe.py"
