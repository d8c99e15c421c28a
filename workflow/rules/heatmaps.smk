# Grad-CAM heatmaps of the multi-label study's settings (zs, lp, ft) per (dataset, model), on a bounded
# sample of test images (every annotated one up to `max_annotated`, plus `n_random` others), scored
# against the dataset's boxes or masks (pointing game, IoU, energy inside; chance beside), the settings
# side by side for the same images, and the summary. Needs multilabel.smk (probe heads, fine-tuned weights,
# prompts); which models get maps is the plan's (the model family declares layers to attribute).


rule heatmaps:
    input:
        unpack(plan.heatmap_inputs),
    output:
        maps_dir=directory(plan.paths["heatmap_maps"]),
        scores=plan.paths["heatmap_scores"],
    log:
        plan.log("heatmaps", "{dataset}/{model}/{setting}"),
    benchmark:
        plan.benchmark("heatmaps", "{dataset}/{model}/{setting}")
    conda:
        "../../envs/finetune.yaml"
    threads: 2
    resources:
        gpu=plan.resources.heatmap_gpu,
        mem_mb=plan.resources.heatmap_mem_mb,
        runtime=plan.resources.heatmap_runtime_min,
    params:
        spec=plan.model_spec,
        options=plan.heatmap_options,
        zero_shot=plan.heatmap_zero_shot,
        seed=plan.seed,
    script:
        "../../scripts/heatmaps.py"


rule heatmap_comparison:
    # The paper's figure: the same annotated images under each setting's map.
    input:
        manifest=plan.paths["manifest"],
        maps_dirs=plan.comparison_maps,
    output:
        report(
            plan.paths["heatmap_comparison"],
            caption="../report/heatmap.rst",
            category="Grad-CAM",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "model": "{model}"},
        ),
    log:
        plan.log("heatmap_comparison", "{dataset}/{model}"),
    localrule: True
    conda:
        "../../envs/finetune.yaml"
    params:
        settings=plan.comparison_settings,
    script:
        "../../scripts/heatmap_comparison.py"


rule summary_heatmaps:
    # scores against annotations, models x settings per dataset
    input:
        scores=plan.heatmap_scores(),
    output:
        table=plan.paths["summary_heatmaps"],
        markdown=plan.paths["summary_heatmaps_md"],
        figure=plan.paths["summary_heatmaps_png"],
    log:
        plan.log("summary_heatmaps", "summary"),
    localrule: True
    conda:
        "../../envs/summary.yaml"
    script:
        "../../scripts/summary_heatmaps.py"
