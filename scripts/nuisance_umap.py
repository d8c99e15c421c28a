"""Snakemake entry point: a written UMAP grid redrawn with its points coloured by a nuisance column."""

from vlmprobe.runner import run_script
from vlmprobe.umap.stage import nuisance_grid_figure


def main(smk):
    nuisance_grid_figure(
        smk.input.manifest,
        smk.input.coords,
        smk.input.quality,
        smk.output[0],
        column=smk.wildcards.nuisance,
        title=f"{smk.wildcards.model} on {smk.wildcards.dataset}: UMAP (cosine) coloured by {smk.wildcards.nuisance}",
        seed=smk.params.seed,
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
