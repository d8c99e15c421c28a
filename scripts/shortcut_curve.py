"""Snakemake entry point: manifest + embedding table -> shortcut-sensitivity curve (see vlmprobe.nuisance.shortcut)."""

from vlmprobe.datasets.synthetic_cxr import MARKER_META
from vlmprobe.nuisance.shortcut import shortcut_curve_for_table
from vlmprobe.runner import run_script


def main(smk):
    shortcut_curve_for_table(
        smk.input.manifest,
        smk.input.embeddings,
        smk.output[0],
        finding=smk.params.finding,
        column=f"meta_{MARKER_META}",
        rates=list(smk.params.rates),
        repeats=smk.params.repeats,
        dataset=smk.wildcards.dataset,
        model=smk.wildcards.model,
        expected_spec=dict(smk.params.spec),
        n_jobs=smk.threads,
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
