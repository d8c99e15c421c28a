"""The package's shape, checked: one room per stage over a small core (docs/development.md, "Module map").

- the core imports no stage; a stage imports the core, plus ``models`` where it must run a model, never another stage;
- the planning layer (``plan``, ``config_check``) reads the config and asks ``models`` / ``datasets`` what they declare;
- Snakemake stays outside the package: only ``scripts/`` see the ``snakemake`` object;
- every module of the package appears in the module map of the development docs.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "vlmprobe"

CORE = {"errors", "io", "images", "dicom", "runtime", "runner", "tables", "figures", "linear_svc", "stats", "labels", "formats", "probe_inputs"}
PLANNING = {"plan", "config_check"}
STAGES = {"datasets", "models", "embed", "linear_probe", "umap", "explore", "multilabel", "heatmaps", "nuisance", "probes", "compare", "reference"}
# The stages that must run a model (embedding, zero-shot text, fine-tuning, Grad-CAM) and so may import `models`.
MAY_IMPORT = {
    **{stage: CORE for stage in STAGES},
    **{stage: CORE | {"models"} for stage in ("embed", "multilabel", "heatmaps")},
    **{unit: CORE for unit in CORE},
    **{unit: CORE | {"models", "datasets"} | PLANNING for unit in PLANNING},
}


def unit_of(module: str) -> str:
    """``vlmprobe.multilabel.finetune`` -> ``multilabel``; ``vlmprobe.plan`` -> ``plan``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("vlmprobe"):
            names |= {f"vlmprobe.{alias.name}" for alias in node.names} if node.module == "vlmprobe" else {node.module}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("vlmprobe")}
    return names


def test_every_module_belongs_to_a_known_unit():
    units = {unit_of(name) for name in modules()} - {""}
    assert units <= CORE | PLANNING | STAGES, f"modules outside the layout: {sorted(units - CORE - PLANNING - STAGES)}"


def test_no_stage_imports_another_and_the_core_imports_no_stage():
    offenders = []
    for name, path in modules().items():
        unit = unit_of(name)
        if not unit:
            continue
        for imported in sorted(imported_modules(path)):
            target = unit_of(imported)
            if target != unit and target not in MAY_IMPORT[unit]:
                offenders.append(f"{name} imports {imported}")
    assert not offenders, "imports against the layout:\n" + "\n".join(offenders)


def test_snakemake_stays_outside_the_package():
    offenders = [name for name, path in modules().items() if re.search(r"^\s*(import snakemake|from snakemake)", path.read_text(), flags=re.M)]
    assert not offenders


def test_the_module_map_names_every_module():
    page = (REPO / "docs" / "development.md").read_text()
    match = re.search(r"^## Module map\n(.*?)(?=^## |\Z)", page, flags=re.M | re.S)
    assert match, "docs/development.md has no '## Module map' section"
    documented = set(re.findall(r"`(vlmprobe(?:\.\w+)*)`", match.group(1)))
    package_units = {name for name in modules() if name != "vlmprobe"}
    missing = sorted(package_units - documented)
    stale = sorted(name for name in documented if name not in modules())
    assert not missing, f"modules missing from the module map: {missing}"
    assert not stale, f"the module map names modules that do not exist: {stale}"


@pytest.mark.parametrize("rule_file", sorted((REPO / "workflow" / "rules").glob("*.smk")), ids=lambda path: path.name)
def test_rule_files_are_wiring_only(rule_file):
    """Planning lives in vlmprobe.plan (unit-tested without Snakemake): a rule file defines no function,
    no lambda and raises nothing."""
    code = rule_file.read_text()
    found = re.findall(r"^\s*def \w+|\blambda\b|^\s*raise\b", code, flags=re.M)
    assert not found, f"{rule_file.name}: {found}"
