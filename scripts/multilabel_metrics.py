"""Snakemake entry point: one setting's predictions + embeddings -> its metrics with bootstrap intervals (vlmprobe.multilabel.metrics)."""

from vlmprobe.io import write_json
from vlmprobe.multilabel.metrics import evaluate_files
from vlmprobe.runner import run_script


def main(smk):
    bootstrap = smk.params.bootstrap
    result = evaluate_files(
        manifest_path=smk.input.manifest,
        predictions_path=smk.input.predictions,
        embedding_path=smk.input.embeddings,
        expected_spec=smk.params.expected_spec,
        n_resamples=bootstrap["n_resamples"],
        seed=bootstrap["seed"],
        confidence=bootstrap["confidence"],
    )
    result.update(dataset=smk.wildcards.dataset, model=smk.wildcards.model, setting=smk.wildcards.setting)
    write_json(smk.output[0], result)


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
