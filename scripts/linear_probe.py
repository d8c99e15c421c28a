"""Snakemake entry point: embeddings -> the poster's LinearSVC probe (see vlmprobe.linear_probe.probe)."""

from vlmprobe.formats.embeddings import aligned
from vlmprobe.formats.manifest import read_group_split
from vlmprobe.formats.predictions import from_probe_result, write_probe_predictions
from vlmprobe.io import write_json
from vlmprobe.linear_probe.probe import run_linear_probe, with_group_level
from vlmprobe.runner import run_script


def main(smk):
    rule = smk.params.positive_label  # {positive_label, fscore} where the dataset sets `fscore:`, else the label alone
    rule = rule if isinstance(rule, dict) else {"positive_label": rule}
    manifest, matrix, manifest_meta, embedding_meta = aligned(smk.input.manifest, smk.input.embeddings, dict(smk.params.spec))
    result = run_linear_probe(
        matrix,
        labels=[labels[0] for labels in manifest["labels"].to_list()],
        split=manifest["split"].to_list(),
        fold=manifest["fold"].to_list(),
        positive_label=rule.get("positive_label"),
        fscore=rule.get("fscore"),
        n_jobs=smk.threads,
        seed=manifest_meta["seed"],
    )
    if smk.input.groups:  # the dataset names a group column: probe its group-aware split too
        group_split, group_fold, group_info = read_group_split(smk.input.groups, manifest["sample_id"].to_list())
        group_result = run_linear_probe(
            matrix,
            labels=[labels[0] for labels in manifest["labels"].to_list()],
            split=group_split,
            fold=group_fold,
            positive_label=rule.get("positive_label"),
            fscore=rule.get("fscore"),
            n_jobs=smk.threads,
            seed=manifest_meta["seed"],
        )
        result = with_group_level(result, group_result, group_info)
    result.update(dataset=smk.wildcards.dataset, model=smk.wildcards.model, embed_dim=int(matrix.shape[1]))
    write_json(smk.output[0], result)
    # per-sample test predictions of every fold model, for the paired comparisons (vlmprobe.compare.paired)
    meta = {"dataset": smk.wildcards.dataset, "model": smk.wildcards.model, "protocol": result["protocol"]["name"], "seed": manifest_meta["seed"]}
    labels = [labels[0] for labels in manifest["labels"].to_list()]
    write_probe_predictions(smk.output.predictions, from_probe_result(result, manifest["sample_id"].to_list(), labels, meta))


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
