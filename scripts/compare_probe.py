"""Snakemake entry point: every model's kNN or tuned-probe test predictions -> paired model comparisons (vlmprobe.compare.paired)."""

from vlmprobe.compare.paired import compare_linear_probe_files, note, write_comparison
from vlmprobe.runner import run_script

TITLES = {"knn": "weighted kNN (DINO)", "logistic": "tuned logistic regression"}


def main(smk):
    settings = dict(smk.params.settings)
    table = compare_linear_probe_files(list(smk.params.entries), **settings)
    name = TITLES[smk.wildcards.probe]
    what = f"{name[0].upper()}{name[1:]}: every pair of models of a dataset on the same test samples; one prediction per sample (the probe on all training rows)."
    write_comparison(
        table, smk.output.table, smk.output.csv, smk.output.markdown, smk.output.html, smk.output.figure,
        title=f"Paired model comparisons: {name}", note_text=note(settings["confidence"], settings["alpha"], what),
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
