"""Snakemake entry point: embeddings -> the poster's LinearSVC probe (see vlmprobe.probes.linear)."""

from vlmprobe.io import write_json
from vlmprobe.predictions import from_probe_result, write_probe_predictions
from vlmprobe.probes.linear import run_linear_probe
from vlmprobe.runner import run_script
from vlmprobe.store import aligned


def main(smk):
    manifest, matrix, manifest_meta, embedding_meta = aligned(smk.input.manifest, smk.input.embeddings, dict(smk.params.spec))
    result = run_linear_probe(
        matrix,
        labels=[labels[0] for labels in manifest["labels"].to_list()],
        split=manifest["split"].to_list(),
        fold=manifest["fold"].to_list(),
        positive_label=smk.params.positive_label,
        n_jobs=smk.threads,
        seed=manifest_meta["seed"],
    )
    result.update(dataset=smk.wildcards.dataset, model=smk.wildcards.model, embed_dim=int(matrix.shape[1]))
    write_json(smk.output[0], result)
    # per-sample test predictions of every fold model, for the paired comparisons (vlmprobe.compare)
    meta = {"dataset": smk.wildcards.dataset, "model": smk.wildcards.model, "protocol": result["protocol"]["name"], "seed": manifest_meta["seed"]}
    labels = [labels[0] for labels in manifest["labels"].to_list()]
    write_probe_predictions(smk.output.predictions, from_probe_result(result, manifest["sample_id"].to_list(), labels, meta))


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
