"""Snakemake entry point: manifest + cached embeddings -> the multi-label study's linear probe (vlmprobe.multilabel.linear_probe)."""

from vlmprobe.multilabel.linear_probe import run_probe_files
from vlmprobe.runner import run_script


def main(smk):
    settings = smk.params.settings
    run_probe_files(
        manifest_path=smk.input.manifest,
        embedding_path=smk.input.embeddings,
        expected_spec=dict(smk.params.spec),
        predictions_path=smk.output.predictions,
        head_path=smk.output.head,
        c_grid=settings["C"],
        threshold=settings["threshold"],
        n_jobs=smk.threads,
        identity={"dataset": smk.wildcards.dataset, "model": smk.wildcards.model},
        protocol=settings.get("protocol", "vlmprobe"),
        validation_fold=settings.get("validation_fold", 0),
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
