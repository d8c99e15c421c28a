"""Snakemake entry point: embeddings -> kNN, few-shot, tuned probe, subgroup gaps, robustness index (vlmprobe.probes.stage)."""

from vlmprobe.formats.embeddings import aligned
from vlmprobe.formats.manifest import read_group_split
from vlmprobe.formats.predictions import write_probe_predictions
from vlmprobe.io import write_json
from vlmprobe.probes.stage import run_probes
from vlmprobe.runner import run_script


def main(smk):
    manifest, matrix, manifest_meta, _ = aligned(smk.input.manifest, smk.input.embeddings, dict(smk.params.spec))
    columns = dict(smk.params.columns)
    group_split = read_group_split(smk.input.groups, manifest["sample_id"].to_list()) if smk.input.groups else None
    seed = int(manifest_meta.get("seed", 0))
    where = f"Probes of {smk.wildcards.dataset}/{smk.wildcards.model}"
    result, predictions = run_probes(
        manifest, matrix, dict(smk.params.settings), nuisances=columns["nuisances"], subgroups=columns["subgroups"],
        group_split=group_split, group_column=columns["group"], seed=seed, where=where,
    )
    result.update(dataset=smk.wildcards.dataset, model=smk.wildcards.model, seed=seed)
    for probe, values in predictions.items():
        values.metadata.update(dataset=smk.wildcards.dataset, model=smk.wildcards.model)
        write_probe_predictions(smk.output[probe], values)
    write_json(smk.output[0], result)


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
