"""Snakemake entry point: embedding table -> UMAP grid, quality table and figure (see vlmprobe.umap.stage)."""

from vlmprobe.runner import run_script
from vlmprobe.umap.stage import grid_for_table


def main(smk):
    grid = smk.params.grid
    grid_for_table(
        smk.input.manifest,
        smk.input.embeddings,
        smk.output.coords,
        smk.output.quality,
        smk.output.figure,
        n_neighbors=grid["n_neighbors"],
        min_dists=grid["min_dist"],
        seed=smk.params.seed,
        n_jobs=smk.threads,
        colour_by=grid.get("colour_by"),
        trust_subsample=grid.get("trust_subsample", 2000),
        title=f"{smk.wildcards.model} on {smk.wildcards.dataset}: UMAP (cosine), rows n_neighbors, columns min_dist",
        expected_spec=dict(smk.params.spec),
    )


# The grid's worker processes are spawned and re-import this script: only the main process runs it.
if __name__ == "__main__":
    run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
