"""Snakemake entry point: manifest + embedding table -> nuisance probes and variance shares (see vlmprobe.nuisance.probes)."""

from vlmprobe.nuisance.probes import nuisance_for_table
from vlmprobe.runner import run_script


def main(smk):
    nuisance_for_table(
        smk.input.manifest,
        smk.input.embeddings,
        smk.output[0],
        nuisances=list(smk.params.nuisances),
        n_permutations=smk.params.n_permutations,
        dataset=smk.wildcards.dataset,
        model=smk.wildcards.model,
        expected_spec=dict(smk.params.spec),
        n_jobs=smk.threads,
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
