"""Snakemake entry point: the linear-probe summary -> the identity-leakage figure (image vs group split)."""

from vlmprobe.linear_probe.summary import write_group_gap_figure
from vlmprobe.runner import run_script


def main(smk):
    write_group_gap_figure(smk.input.table, smk.output.figure)


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
