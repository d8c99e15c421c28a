"""Snakemake entry point: our summary table beside a published one (see vlmprobe.reference.compare)."""

from vlmprobe.reference.compare import (
    write_linear_probe_comparison,
    write_settings_comparison,
)
from vlmprobe.runner import run_script


def main(smk):
    block = dict(smk.params.block)
    if smk.params.kind == "linear_probe":
        write_linear_probe_comparison(
            smk.input.ours,
            block,
            preset_datasets=list(smk.params.datasets),
            preset_models=list(smk.params.models),
            csv_path=smk.output.csv,
            markdown_path=smk.output.markdown,
        )
    else:
        ours = list(smk.input)  # empty when the workflow has no summary of that name: every row "not run"
        write_settings_comparison(
            ours[0] if ours else None,
            block,
            csv_path=smk.output.csv,
            markdown_path=smk.output.markdown,
            missing_reason=smk.params.missing_reason,
        )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
