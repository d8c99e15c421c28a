"""The per-stage conda environments (envs/*.yaml) are complete, minimal where it matters, and in use.

``snakemake --sdm conda`` runs each rule in the environment its ``conda:`` directive names. These
tests read the rule files, follow each rule's script through the vlmprobe modules it imports (all
imports, function-level ones too: a lazy import still runs in that environment), map the imported
top-level modules to the distributions that provide them, and check that the rule's environment
installs every one of them.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import stat
import sys
from functools import cache
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support.rule_files import workflow_rules

REPO = Path(__file__).resolve().parents[1]
ENVS = REPO / "envs"
PACKAGE = REPO / "src" / "vlmprobe"
# Stages whose environment must not carry torch (the point of separate environments).
TORCH_FREE = {"data", "analysis", "summary"}
# conda-forge names of packages whose PyPI name differs.
CONDA_TO_PYPI = {"pytorch": "torch", "pytorch-cpu": "torch", "pytorch-gpu": "torch"}


# -- reading the environments -------------------------------------------------------------------------


def env_files() -> list[Path]:
    return sorted(ENVS.glob("*.yaml"))


@cache
def env_packages(path: Path) -> dict[str, Requirement]:
    """Canonical distribution name -> requirement, over conda and pip dependencies."""
    spec = yaml.safe_load(path.read_text())
    packages: dict[str, Requirement] = {}
    for dependency in spec["dependencies"]:
        if isinstance(dependency, dict):
            for line in dependency.get("pip", []):
                if line.startswith("-"):
                    continue  # pip options (-e, --index-url) are not packages
                requirement = Requirement(line)
                packages[canonicalize_name(requirement.name)] = requirement
        else:
            # conda match spec: "name", "name=1.2", "name>=1.2", "channel::name 1.2"
            name = re.split(r"[\s=<>!]", str(dependency).split("::")[-1], maxsplit=1)[0]
            name = CONDA_TO_PYPI.get(name, name)
            packages[canonicalize_name(name)] = Requirement(name)
    return packages


# -- following imports --------------------------------------------------------------------------------


def module_file(dotted: str) -> Path | None:
    """The source file of a vlmprobe module (package __init__ or plain module), if it exists."""
    parts = dotted.split(".")
    if parts[0] != "vlmprobe":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def imports_of(path: Path, here: str | None = None) -> set[str]:
    """Absolute dotted names imported anywhere in ``path`` (relative imports resolved against the
    module's own name ``here``, by default derived from its place under src/)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    if here is None:
        here = module_name(path) if path.is_relative_to(PACKAGE) else ""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package_parts = here.split(".") if is_package else here.split(".")[:-1]
                base_parts = package_parts[: len(package_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            # `from vlmprobe.x import y` may import the submodule y.
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def third_party_imports(script: Path) -> dict[str, list[str]]:
    """Top-level third-party module -> the files (script or vlmprobe modules) that import it."""
    seen: set[Path] = set()
    queue = [script]
    found: dict[str, list[str]] = {}
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imports_of(path):
            top = name.split(".")[0]
            if top == "vlmprobe":
                # Importing vlmprobe.a.b runs vlmprobe/__init__, vlmprobe/a/__init__ and vlmprobe/a/b.
                parts = name.split(".")
                for end in range(1, len(parts) + 1):
                    target = module_file(".".join(parts[:end]))
                    if target is not None:
                        queue.append(target)
            elif top and top not in sys.stdlib_module_names and top not in ("__future__", "snakemake"):
                found.setdefault(top, []).append(shown(path))
        if path.name == "__init__.py" and "pkgutil.iter_modules(__path__)" in path.read_text():
            # A registry package that imports all of its modules at run time (vlmprobe.models).
            queue += [p for p in path.parent.glob("*.py") if p != path]
            queue += [p / "__init__.py" for p in path.parent.iterdir() if (p / "__init__.py").is_file()]
    return found


@cache
def module_distributions() -> dict[str, list[str]]:
    """Top-level module -> the installed distributions that provide it (one scan of site-packages)."""
    return importlib.metadata.packages_distributions()


def distributions_of(module: str) -> list[str]:
    return [canonicalize_name(d) for d in module_distributions().get(module, [])]


# -- tests ---------------------------------------------------------------------------------------------


def test_every_stage_has_a_parsable_environment():
    expected = {"data", "embed", "analysis", "finetune", "summary"}
    assert expected <= {path.stem for path in env_files()}
    for path in env_files():
        spec = yaml.safe_load(path.read_text())
        assert isinstance(spec, dict), f"{path.name}: not a YAML mapping"
        assert spec.get("channels"), f"{path.name}: no channels"
        dependencies = spec.get("dependencies")
        assert isinstance(dependencies, list) and dependencies, f"{path.name}: no dependencies"
        conda_names = {str(d).split("=")[0] for d in dependencies if not isinstance(d, dict)}
        assert {"python", "pip"} <= conda_names, f"{path.name}: needs python and pip"
        assert env_packages(path), f"{path.name}: lists no packages"


def test_environment_pins_match_pyproject():
    """A package pinned in pyproject.toml is pinned the same in every environment that has it."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = {canonicalize_name(r.name): r for r in map(Requirement, project["dependencies"])}
    for path in env_files():
        for name, requirement in env_packages(path).items():
            if name in pinned and requirement.specifier:
                assert requirement.specifier == pinned[name].specifier, (
                    f"{path.name}: {requirement} but pyproject.toml says {pinned[name]}"
                )


def test_torch_only_where_a_model_runs():
    for path in env_files():
        has_torch = "torch" in env_packages(path)
        if path.stem in TORCH_FREE:
            assert not has_torch, f"{path.name} must not install torch"
    assert "torch" in env_packages(ENVS / "embed.yaml")
    assert "torch" in env_packages(ENVS / "finetune.yaml")


def test_post_deploy_installs_vlmprobe_without_dependencies():
    for path in env_files():
        deploy = path.with_suffix(".post-deploy.sh")
        assert deploy.is_file(), f"{deploy.name} missing: the environment would lack the vlmprobe package"
        assert deploy.stat().st_mode & stat.S_IXUSR, f"{deploy.name} is not executable"
        text = deploy.read_text()
        assert "--no-deps" in text and "--editable" in text, f"{deploy.name} must install vlmprobe with --no-deps"


def test_every_executing_rule_names_an_existing_environment():
    rules = workflow_rules()
    assert rules, "no rules found"
    missing = [name for name, rule in rules.items() if rule["executes"] and rule["conda"] is None]
    assert not missing, f"rules without a conda: directive: {', '.join(sorted(missing))}"
    for name, rule in rules.items():
        if rule["conda"] is not None:
            assert rule["conda"].is_file(), f"rule {name}: conda env {rule['conda']} does not exist"
            assert rule["conda"].parent == ENVS, f"rule {name}: use an environment from envs/"


def test_environments_name_every_package_their_rules_import():
    problems = []
    checked = 0
    for name, rule in sorted(workflow_rules().items()):
        if rule["script"] is None or rule["conda"] is None:
            continue
        assert rule["script"].is_file(), f"rule {name}: script {rule['script']} does not exist"
        packages = env_packages(rule["conda"])
        for module, importers in sorted(third_party_imports(rule["script"]).items()):
            distributions = distributions_of(module)
            if not distributions:
                problems.append(f"rule {name}: no installed distribution provides module {module!r} ({importers[0]})")
            elif not any(d in packages for d in distributions):
                problems.append(
                    f"rule {name}: {rule['conda'].name} lacks {' or '.join(distributions)} "
                    f"(module {module!r}, imported by {', '.join(sorted(set(importers)))})"
                )
        checked += 1
    assert checked, "no rule with both script: and conda: found"
    assert not problems, "\n".join(problems)


def test_scripts_are_named_after_their_rules():
    """scripts/<rule>.py, or one script for a family of rules (scripts/reference.py: reference_*); no script is orphaned."""
    rules = workflow_rules()
    scripts = {name: rule["script"] for name, rule in rules.items() if rule["script"] is not None}
    misnamed = [f"rule {name}: {script.name}" for name, script in scripts.items() if not (name == script.stem or name.startswith(script.stem + "_"))]
    assert not misnamed, "scripts not named after their rule:\n" + "\n".join(sorted(misnamed))
    unused = sorted(path.name for path in (REPO / "scripts").glob("*.py") if path.resolve() not in {s.resolve() for s in scripts.values()})
    assert not unused, f"scripts no rule runs: {unused}"


def test_import_scanner_sees_relative_and_lazy_imports(tmp_path):
    """The scanner the check relies on: imports inside functions count, relative imports resolve,
    and vlmprobe modules are followed to what they import."""
    script = tmp_path / "script.py"
    script.write_text("def main():\n    import numpy.linalg\n    from vlmprobe import io\n")
    found = third_party_imports(script)
    assert "numpy" in found
    assert "pyarrow" in found, "vlmprobe.io imports pyarrow: the scanner must follow vlmprobe modules"
    assert "sys" not in found and "vlmprobe" not in found

    module = tmp_path / "__init__.py"
    module.write_text("from .base import thing\nfrom .. import errors\nfrom . import sibling\n")
    names = imports_of(module, here="vlmprobe.models")
    assert {"vlmprobe.models.base", "vlmprobe.errors", "vlmprobe.models.sibling"} <= names
