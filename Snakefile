# vlmprobe: what vision(-language) model image encoders see in medical images.
# This file only validates the configuration and includes one rule file per stage.
from snakemake.utils import min_version, validate

from vlmprobe.config_check import check_config

min_version("9.0")


# `--configfile <preset>` replaces config.yaml instead of being merged into it, so a study preset
# never inherits the default datasets and models.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


# Every problem at once (the schema's and the cross-checks'), each naming its config key and the fix;
# Snakemake's validate then fills in the defaults, and common.smk makes the job plan from the result.
check_config(config, workflow.source_path("workflow/schemas/config.schema.yaml"))
validate(config, "workflow/schemas/config.schema.yaml")


# The description on the landing page of `snakemake --report`.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/linear_probe.smk"
include: "workflow/rules/umap.smk"
include: "workflow/rules/explore.smk"
include: "workflow/rules/multilabel.smk"
include: "workflow/rules/heatmaps.smk"
include: "workflow/rules/nuisance.smk"
include: "workflow/rules/probes.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/reference.smk"


rule all:
    default_target: True
    input:
        plan.all_targets(),
