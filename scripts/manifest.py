"""Snakemake entry point: dataset spec -> manifest (see vlmprobe.datasets)."""

from pathlib import Path

from vlmprobe.datasets import make_manifest
from vlmprobe.runner import run_script


def main(smk):
    make_manifest(
        dataset=smk.wildcards.dataset,
        spec=dict(smk.params.spec),
        seed=smk.params.seed,
        test_fraction=smk.params.split["test_fraction"],
        n_folds=smk.params.split["n_folds"],
        out_path=Path(smk.output[0]),
        data_dir=Path(smk.params.data_dir),
        base_dir=Path.cwd(),
        split_protocol=smk.params.split.get("protocol", "vlmprobe"),
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
