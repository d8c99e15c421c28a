"""Snakemake entry point: every linear probe's test predictions -> paired model comparisons (vlmprobe.compare.paired)."""

from vlmprobe.compare.paired import compare_linear_probe_files, note, write_comparison
from vlmprobe.runner import run_script


def main(smk):
    settings = dict(smk.params.settings)
    table = compare_linear_probe_files(list(smk.params.entries), **settings)
    what = (
        "Linear probe: every pair of models of a dataset on the same test samples; values are the summary's "
        "(mean over the fold models), the bootstrap resamples the test samples with the fold models fixed."
    )
    write_comparison(
        table, smk.output.table, smk.output.csv, smk.output.markdown, smk.output.html, smk.output.figure,
        title="Paired model comparisons: linear probe", note_text=note(settings["confidence"], settings["alpha"], what),
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
