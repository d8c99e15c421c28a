"""Snakemake entry point: every model of one dataset side by side at one UMAP cell."""

from vlmprobe.runner import run_script
from vlmprobe.umap.stage import dataset_summary


def main(smk):
    models = list(smk.params.models)
    cell = smk.params.cell
    dataset_summary(
        smk.input.manifest,
        coords_paths=dict(zip(models, smk.input.coords)),
        quality_paths=dict(zip(models, smk.input.quality)),
        figure_path=smk.output[0],
        n_neighbors=cell["n_neighbors"],
        min_dist=cell["min_dist"],
        colour_by=smk.params.colour_by,
        title=f"{smk.wildcards.dataset}: every model",
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
