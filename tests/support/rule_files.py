"""The workflow's rules as written in Snakefile and workflow/rules/*.smk, read as text.

Enough for tests that check what rules declare (conda environments, scripts, groups, local
rules) without loading the workflow through Snakemake. Assumes snakefmt's layout: ``rule name:``
at the start of a line, directives indented by four spaces, values on the same or following lines.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from . import REPO

RULE_FILES = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
# Directives whose code runs inside the rule's conda environment.
EXECUTING = ("script", "shell", "notebook", "wrapper")


def rule_blocks(path: Path) -> dict[str, dict[str, str]]:
    """``{rule: {directive: raw text}}`` of a snakefmt-formatted rule file."""
    rules: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    directive = None
    for line in path.read_text().splitlines():
        head = re.match(r"^(?:rule|checkpoint)\s+(\w+)\s*:", line)
        if head:
            current = rules.setdefault(head.group(1), {})
            directive = None
            continue
        if current is None:
            continue
        if line.strip() and not line.startswith((" ", "\t")):
            current = directive = None  # back at top level
            continue
        item = re.match(r"^ {4}(\w+)\s*:\s*(.*)$", line)
        if item:
            directive = item.group(1)
            current[directive] = item.group(2)
        elif directive is not None and line.strip():
            current[directive] += " " + line.strip()
    return rules


def quoted(value: str) -> str | None:
    match = re.search(r"""["']([^"']+)["']""", value)
    return match.group(1) if match else None


@cache
def workflow_rules() -> dict[str, dict]:
    """Every rule: its file, whether it executes code and runs locally, its group, its conda
    environment and its script (paths resolved as Snakemake does)."""
    found = {}
    for path in RULE_FILES:
        if not path.exists():
            continue
        for name, directives in rule_blocks(path).items():
            conda = quoted(directives.get("conda", "")) if "conda" in directives else None
            script = quoted(directives.get("script", "")) if "script" in directives else None
            found[name] = {
                "file": path,
                "executes": any(d in directives for d in EXECUTING),
                "local": directives.get("localrule", "").strip() == "True",
                "group": quoted(directives["group"]) if "group" in directives else None,
                # conda: and script: paths are relative to the file that defines the rule.
                "conda": (path.parent / conda).resolve() if conda else None,
                "script": (path.parent / script).resolve() if script else None,
            }
    return found
