"""Snakemake entry point: one (dataset, model)'s UMAP cell -> its explorer page (see vlmprobe.explore)."""

from vlmprobe.explore.stage import explorer_page
from vlmprobe.runner import run_script


def main(smk):
    page = smk.params.page
    explorer_page(
        smk.input.manifest,
        smk.input.coords,
        smk.input.thumbnails,
        smk.output[0],
        n_neighbors=page["cell"]["n_neighbors"],
        min_dist=page["cell"]["min_dist"],
        title=f"{smk.wildcards.model} on {smk.wildcards.dataset}",
        predictions_path=smk.input.get("predictions"),
        nuisances=page["nuisances"],
        group=page["group"],
        index_path=page["index"],
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
