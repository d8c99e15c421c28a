"""Snakemake entry point: offline check of one model spec (see vlmprobe.models)."""

from vlmprobe.io import write_json
from vlmprobe.models import check_spec, family_of
from vlmprobe.runner import run_script


def main(smk):
    spec = dict(smk.params.spec)
    check_spec(smk.wildcards.model, spec)
    write_json(smk.output[0], {"model": smk.wildcards.model, "spec": spec, "family": family_of(smk.wildcards.model, spec).name, "ok": True})


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
