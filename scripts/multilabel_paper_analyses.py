"""Snakemake entry point: the settings' predictions, heads and embeddings -> Sadman et al.'s further analyses (vlmprobe.multilabel.paper_analyses)."""

from vlmprobe.multilabel.paper_analyses import run_paper_analyses
from vlmprobe.runner import run_script


def main(smk):
    predictions = {setting: smk.input[f"{setting}_predictions"] for setting in ("zs", "lp", "ft") if f"{setting}_predictions" in smk.input.keys()}
    run_paper_analyses(
        manifest_path=smk.input.manifest,
        embedding_path=smk.input.embeddings,
        predictions=predictions,
        out_dir=smk.output[0],
        lp_head=smk.input.get("lp_head"),
        ft_head=smk.input.get("ft_head"),
        ft_embedding=smk.input.get("ft_embeddings"),
        ft_info=smk.input.get("ft_info"),
        expected_spec=smk.params.expected_spec,
        dataset=smk.wildcards.dataset,
        model=smk.wildcards.model,
        seed=smk.params.seed,
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
