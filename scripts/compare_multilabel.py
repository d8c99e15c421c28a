"""Snakemake entry point: the multi-label study's test predictions -> paired comparisons of every model/setting (vlmprobe.compare.paired)."""

from vlmprobe.compare.paired import compare_multilabel_files, note, write_comparison
from vlmprobe.runner import run_script


def main(smk):
    settings = dict(smk.params.settings)
    table = compare_multilabel_files(list(smk.params.entries), dict(smk.params.manifests), **settings)
    what = "Multi-label study: every pair of (model, setting) of a dataset on the same test samples."
    write_comparison(
        table, smk.output.table, smk.output.csv, smk.output.markdown, smk.output.html, smk.output.figure,
        title="Paired comparisons: multi-label study", note_text=note(settings["confidence"], settings["alpha"], what),
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
