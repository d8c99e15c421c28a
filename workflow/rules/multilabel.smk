# The multi-label study (seeds 000/001, Sadman et al. 2025): per (dataset, model) up to three settings --
# zero-shot (zs), linear probe (lp) and full fine-tuning (ft) -- each writing test predictions, then one
# metrics job per setting (bootstrap intervals) and the summary table. Which (model, setting) runs, and why
# the others do not, is the plan's (vlmprobe.plan: the model family declares a text tower, a trainable tower).
# zs and lp read the cached embedding table (no image is embedded again); ft trains on the images [GPU].


rule multilabel_lp:
    input:
        manifest=plan.paths["manifest"],
        embeddings=plan.paths["embedding"],
    output:
        predictions=plan.path("multilabel_predictions", setting="lp"),
        head=plan.paths["multilabel_lp_head"],
    log:
        plan.log("multilabel_lp", "{dataset}/{model}"),
    benchmark:
        plan.benchmark("multilabel_lp", "{dataset}/{model}")
    group:
        "analysis"
    conda:
        "../../envs/analysis.yaml"
    threads: 2
    resources:
        mem_mb=plan.resources.cpu_mem_mb,
        runtime=plan.resources.cpu_runtime_min,
    params:
        spec=plan.model_spec,
        settings=plan.multilabel_lp_settings,
    script:
        "../../scripts/multilabel_lp.py"


rule zero_shot:
    # Only the text tower runs (a few prompts per class, on the CPU): the images come from the cached table.
    input:
        manifest=plan.paths["manifest"],
        embeddings=plan.paths["embedding"],
        check=plan.paths["model_check"],
        weights=plan.model_input_files,
    output:
        predictions=plan.path("multilabel_predictions", setting="zs"),
    log:
        plan.log("zero_shot", "{dataset}/{model}"),
    benchmark:
        plan.benchmark("zero_shot", "{dataset}/{model}")
    group:
        "analysis"
    conda:
        "../../envs/finetune.yaml"  # torch + open_clip for the text tower, scikit-learn + polars for tables
    threads: 2
    resources:
        mem_mb=plan.resources.cpu_mem_mb,
        runtime=plan.resources.cpu_runtime_min,
    params:
        spec=plan.model_spec,
        prompts=plan.zero_shot_prompts,
        decision=plan.zero_shot_decision,
    script:
        "../../scripts/zero_shot.py"


rule finetune:
    # Resumable: a killed job continues after its last finished epoch (checkpoints in results/finetune/.../resume/).
    input:
        manifest=plan.paths["manifest"],
        check=plan.paths["model_check"],
        weights=plan.model_input_files,
    output:
        encoder=plan.paths["finetune_encoder"],
        head=plan.paths["finetune_head"],
        info=plan.paths["finetune_info"],
        embeddings=plan.paths["finetune_embedding"],
        predictions=plan.path("multilabel_predictions", setting="ft"),
    log:
        plan.log("finetune", "{dataset}/{model}"),
    benchmark:
        plan.benchmark("finetune", "{dataset}/{model}")
    conda:
        "../../envs/finetune.yaml"
    threads: 4
    resources:
        gpu=1,
        mem_mb=plan.resources.gpu_mem_mb,
        runtime=plan.resources.finetune_runtime_min,
    params:
        spec=plan.model_spec,
        settings=plan.finetune_settings,
        seed=plan.seed,
    script:
        "../../scripts/finetune.py"


rule multilabel_metrics:
    input:
        manifest=plan.paths["manifest"],
        predictions=plan.paths["multilabel_predictions"],
        embeddings=plan.metrics_embeddings,
    output:
        plan.paths["multilabel_metrics"],
    log:
        plan.log("multilabel_metrics", "{dataset}/{model}/{setting}"),
    benchmark:
        plan.benchmark("multilabel_metrics", "{dataset}/{model}/{setting}")
    group:
        "analysis"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=plan.resources.cpu_mem_mb,
        runtime=plan.resources.cpu_runtime_min,
    params:
        bootstrap=plan.bootstrap,
        expected_spec=plan.metrics_expected_spec,
    script:
        "../../scripts/multilabel_metrics.py"


rule multilabel_paper_analyses:
    # Protocol sadman2025 only: the notebook's threshold sweep, score maps with per-domain P/R/F1, class counts,
    # loss curves and PCA / UMAP / TriMap projections of one (dataset, model).
    input:
        unpack(plan.paper_analyses.inputs),
    output:
        report(
            directory(plan.paths["multilabel_paper_analyses"]),
            patterns=["{name}.png"],
            caption="../report/paper_analyses.rst",
            category="Multi-label study",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "model": "{model}", "figure": "{name}"},
        ),
    log:
        plan.log("multilabel_paper_analyses", "{dataset}/{model}"),
    benchmark:
        plan.benchmark("multilabel_paper_analyses", "{dataset}/{model}")
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=plan.resources.cpu_mem_mb,
        runtime=plan.resources.cpu_runtime_min,
    params:
        expected_spec=plan.model_spec,
        seed=plan.seed,
    script:
        "../../scripts/multilabel_paper_analyses.py"


rule summary_multilabel:
    # every setting's metrics in the paper's layout, and why the others did not run
    input:
        results=plan.multilabel_results(),
        analyses=plan.paper_analyses.dirs(),
    output:
        table=plan.paths["summary_multilabel"],
        csv=plan.paths["summary_multilabel_csv"],
        markdown=plan.paths["summary_multilabel_md"],
    log:
        plan.log("summary_multilabel", "summary"),
    localrule: True
    conda:
        "../../envs/summary.yaml"
    params:
        skipped=plan.multilabel_skipped(),
    script:
        "../../scripts/summary_multilabel.py"
