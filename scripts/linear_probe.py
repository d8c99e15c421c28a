"""Snakemake entry point: embeddings -> the poster's LinearSVC probe (see vlmprobe.probes.linear)."""

from vlmprobe.io import write_json
from vlmprobe.probes.linear import run_linear_probe, with_group_level
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
    if "group_split" in manifest.columns:  # the dataset names a group column: probe the group-aware split too
        group_result = run_linear_probe(
            matrix,
            labels=[labels[0] for labels in manifest["labels"].to_list()],
            split=manifest["group_split"].to_list(),
            fold=manifest["group_fold"].to_list(),
            positive_label=smk.params.positive_label,
            n_jobs=smk.threads,
            seed=manifest_meta["seed"],
        )
        result = with_group_level(result, group_result, manifest_meta["group"])
    result.update(dataset=smk.wildcards.dataset, model=smk.wildcards.model, embed_dim=int(matrix.shape[1]))
    write_json(smk.output[0], result)


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
