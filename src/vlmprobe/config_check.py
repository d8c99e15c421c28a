"""Config validation with messages a user can act on.

The Snakefile calls :func:`check_config` before Snakemake's own ``validate`` (which then fills in the
defaults). jsonschema's own messages point into the schema (``schema['properties']['models']
['additionalProperties'] ...``); here every problem names the config key as it is written in the
YAML file (``embedding.batch_size``, ``umap.n_neighbors[0]``), what is wrong with it, and the fix.
All problems are reported at once, so fixing a config takes one round, not one per mistake.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vlmprobe.errors import VlmprobeError

SCHEMA_NAME = "workflow/schemas/config.schema.yaml"
TYPE_NAMES = {
    "integer": "a whole number",
    "number": "a number",
    "string": "text",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping of keys to values",
    "null": "null",
}


def key_path(parts: Iterable[Any]) -> str:
    """``['umap', 'n_neighbors', 0]`` -> ``umap.n_neighbors[0]`` (the empty path is the whole config)."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<top level>"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _did_you_mean(value: Any, options: Iterable[Any]) -> str:
    close = difflib.get_close_matches(str(value), [str(option) for option in options], n=3, cutoff=0.6)
    return f" (did you mean {', '.join(f'`{c}`' for c in close)}?)" if close else ""


def _example(schema: dict[str, Any]) -> str:
    default = schema.get("default")
    return f" (default: {_show(default)})" if default not in (None, {}, []) else ""


def describe(error) -> str:
    """One line for one jsonschema ``ValidationError``: the config key, the problem, the fix."""
    path = list(error.absolute_path)
    key = key_path(path)
    validator, expected, value, schema = error.validator, error.validator_value, error.instance, error.schema
    under = f"under `{key}`" if path else "at the top level"
    if "propertyNames" in error.schema_path:
        return (
            f"config key `{key}`: the name {value!r} is not allowed; fix: start names with a letter or digit and use only "
            "letters, digits, '_', '.' and '-' (names become folder and file names)."
        )
    if validator == "type":
        wanted = " or ".join(TYPE_NAMES.get(name, name) for name in ([expected] if isinstance(expected, str) else expected))
        hint = " without quotes" if isinstance(value, str) and expected in ("integer", "number", "boolean") else ""
        if expected == "object":
            hint = f" (indented `name: value` lines under `{path[-1] if path else key}:`)"
        return f"config key `{key}`: {_show(value)} is {_kind(value)}, but it must be {wanted}; fix: write {wanted}{hint}{_example(schema)}."
    if validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bound = {
            "minimum": f"of at least {expected}",
            "maximum": f"of at most {expected}",
            "exclusiveMinimum": f"above {expected}",
            "exclusiveMaximum": f"below {expected}",
        }[validator]
        return f"config key `{key}`: {error.message}; fix: use a value {bound}{_example(schema)}."
    if validator == "enum":
        return f"config key `{key}`: {_show(value)} is not allowed{_did_you_mean(value, expected)}; fix: use one of {', '.join(map(str, expected))}."
    if validator == "additionalProperties" and isinstance(value, dict):
        known = list(schema.get("properties", {}))
        unknown = [name for name in value if name not in known]
        lines = []
        for name in unknown:
            lines.append(
                f"config key `{key_path([*path, name])}`: unknown key{_did_you_mean(name, known)}; fix: correct or remove it "
                f"(keys allowed {under}: {', '.join(known)})."
            )
        return "\n".join(lines) if lines else f"config key `{key}`: {error.message}."
    if validator == "required" and isinstance(value, dict):
        missing = [name for name in expected if name not in value]
        return "\n".join(f"config key `{key_path([*path, name])}` is missing; fix: add `{name}:` {under}." for name in missing)
    if validator == "minProperties":
        return f"config key `{key}` is empty; fix: list at least {expected} entry {under}{_explain(schema)}."
    if validator == "minItems":
        return f"config key `{key}` is an empty list; fix: give at least {expected} value(s){_example(schema)}."
    if validator == "minLength":
        return f"config key `{key}` is empty text; fix: fill it in or remove the key."
    return f"config key `{key}`: {error.message}; fix: see `{key}`{_explain(schema)} in {SCHEMA_NAME}."


def _explain(schema: dict[str, Any]) -> str:
    description = schema.get("description")
    return f" ({description.strip()})" if isinstance(description, str) and description.strip() else ""


def config_problems(config: Any, schema: dict[str, Any]) -> list[str]:
    """Every schema violation of ``config``, one line each, ordered as the keys appear in the file."""
    import jsonschema

    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    validator = validator_class(schema)
    errors = sorted(validator.iter_errors(config), key=lambda error: [str(part) for part in error.absolute_path])
    lines: list[str] = []
    for error in errors:
        for line in describe(error).splitlines():
            if line not in lines:
                lines.append(line)
    return lines


def load_schema(schema_path: str | Path) -> dict[str, Any]:
    import yaml

    with open(schema_path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def check_config(config: Any, schema_path: str | Path) -> None:
    """Raise one :class:`VlmprobeError` listing every problem of ``config`` (nothing runs before it passes)."""
    problems = config_problems(config, load_schema(schema_path))
    if problems:
        listing = "\n".join(f"  - {line}" for line in problems)
        raise VlmprobeError(
            f"The configuration has {len(problems)} problem(s); nothing was run:\n{listing}\n"
            f"Edit the config file(s) given to snakemake; every key is documented in {SCHEMA_NAME}."
        )
