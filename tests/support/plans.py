"""Plans built in tests without Snakemake: the config as the rule files see it, and wildcards as Snakemake passes them."""

from __future__ import annotations

from types import SimpleNamespace

from vlmprobe.config_check import check_config, load_schema, with_defaults
from vlmprobe.plan import Plan

from . import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def validated(config: dict) -> dict:
    """The config as the rule files see it: checked, then the schema's defaults filled in (Snakemake's validate)."""
    check_config(config, SCHEMA)
    return with_defaults(config, load_schema(SCHEMA))


def plan_of(datasets: dict, models: dict, **sections) -> Plan:
    return Plan(validated({"datasets": datasets, "models": models, **sections}))


def wildcards(**names) -> SimpleNamespace:
    return SimpleNamespace(**names)
