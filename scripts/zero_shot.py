"""Snakemake entry point: class prompts through the text tower vs cached image embeddings (vlmprobe.multilabel.zero_shot)."""

from vlmprobe.multilabel.zero_shot import run_zero_shot_files
from vlmprobe.runner import run_script


def main(smk):
    prompts = smk.params.prompts
    run_zero_shot_files(
        manifest_path=smk.input.manifest,
        embedding_path=smk.input.embeddings,
        model_id=smk.wildcards.model,
        spec=dict(smk.params.spec),
        predictions_path=smk.output.predictions,
        templates=prompts["templates"],
        label_text=prompts["label_text"],
        rule=smk.params.decision["rule"],
        threshold=smk.params.decision["threshold"],
        device="cpu",  # a few prompts per class: the text tower is cheap on a CPU
        identity={"dataset": smk.wildcards.dataset, "model": smk.wildcards.model},
        protocol=smk.params.decision.get("protocol", "vlmprobe"),
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
