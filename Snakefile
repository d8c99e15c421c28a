# vlmprobe: what vision(-language) model image encoders see in medical images.
# This file only validates the configuration and includes one rule file per stage.
from snakemake.utils import min_version, validate

min_version("9.0")


# `--configfile <preset>` replaces config.yaml instead of being merged into it, so a study preset
# never inherits the default datasets and models.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    input:
        all_targets(),
    default_target: True
