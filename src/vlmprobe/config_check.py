"""Config validation with messages a user can act on.

The Snakefile calls :func:`check_config` before Snakemake's own ``validate`` (which then fills in the
defaults). jsonschema's own messages point into the schema (``schema['properties']['models']
['additionalProperties'] ...``); here every problem names the config key as it is written in the
YAML file (``embedding.batch_size``, ``umap.n_neighbors[0]``), what is wrong with it, and the fix.
Beside the schema, :func:`cross_check_problems` checks what one key says about another (names listed in
`multilabel:` and `heatmaps:` exist, a fine-tuned model is trainable, ...), asking the model families
what they can do. All problems are reported at once, so fixing a config takes one round, not one per mistake.
"""

from __future__ import annotations

import copy
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


def with_defaults(config: Any, schema: dict[str, Any]) -> Any:
    """A copy of ``config`` with the schema's defaults filled in, as Snakemake's ``validate`` fills them
    (a key's default wherever its parent mapping exists); the config itself is left alone."""
    import jsonschema

    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    check_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, property_schema in properties.items():
                if isinstance(property_schema, dict) and "default" in property_schema:
                    instance.setdefault(name, copy.deepcopy(property_schema["default"]))
        yield from check_properties(validator, properties, instance, subschema)

    filled = copy.deepcopy(config)
    for _ in jsonschema.validators.extend(validator_class, {"properties": set_defaults})(schema).iter_errors(filled):
        pass  # the schema's problems are config_problems' to report
    return filled


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _listed(value: Any) -> list[Any] | None:
    return list(value) if isinstance(value, list) else None


def _either(names: list[str]) -> str:
    """``['a', 'b', 'c']`` -> ``a, b or c``."""
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _problem(problem: str, fix: str) -> str:
    return f"{problem} Fix: {fix}"


def _unknown_names(key: str, names: list[Any], known: list[str], what: str) -> list[str]:
    unknown = [name for name in names if name not in known]
    if not unknown:
        return []
    return [_problem(f"`{key}` names {what} {unknown} that config.yaml does not define.", f"use names from `{what.removesuffix('(s)')}s:`: {known}.")]


def cross_check_problems(config: Any) -> list[str]:
    """What the schema cannot say: names one block gives must exist in another, and what a block asks of a
    model its family must declare. ``config`` has its defaults filled in (:func:`with_defaults`); keys of the
    wrong type are skipped (the schema reports those)."""
    from vlmprobe.models import FAMILIES, load_families
    from vlmprobe.models.base import family_of

    config = _mapping(config)
    datasets, models = _mapping(config.get("datasets")), _mapping(config.get("models"))
    dataset_names, model_names = list(datasets), list(models)
    problems: list[str] = []

    families = {}
    for model, spec in models.items():
        if isinstance(spec, dict) and isinstance(spec.get("family"), str):
            try:
                families[model] = family_of(model, spec)
            except VlmprobeError as error:
                problems.append(str(error))

    for dataset, spec in datasets.items():
        if isinstance(spec, dict) and "shortcut" in spec and spec.get("kind") != "synthetic-cxr":
            problems.append(
                _problem(
                    f"`datasets: {dataset}: shortcut` is set, but only kind synthetic-cxr draws a shortcut marker.",
                    "remove the key (a real dataset's nuisances go in `nuisances:`).",
                )
            )

    multilabel = _mapping(config.get("multilabel"))
    study = _listed(multilabel.get("datasets"))
    if multilabel.get("enabled", True) and study is not None:
        problems += _unknown_names("multilabel: datasets", study, dataset_names, "dataset")
    finetune = _listed(_mapping(multilabel.get("finetune")).get("models"))
    if finetune is not None:
        problems += _unknown_names("multilabel: finetune: models", finetune, model_names, "model")
        load_families()
        trainable = [name for name, family in sorted(FAMILIES.items()) if family.trainable]
        for model in finetune:
            if model in families and not families[model].trainable:
                problems.append(
                    _problem(
                        f"`multilabel: finetune: models` lists {model!r}, whose family {models[model].get('family')!r} has no trainable image tower.",
                        f"fine-tune only {_either(trainable)} models.",
                    )
                )

    heatmaps = _mapping(config.get("heatmaps"))
    mapped_datasets = _listed(heatmaps.get("datasets"))
    if heatmaps.get("enabled", True) and mapped_datasets is not None:
        problems += _unknown_names("heatmaps: datasets", mapped_datasets, dataset_names, "dataset(s)")
    mapped_models = _listed(heatmaps.get("models"))
    if mapped_models is not None:
        problems += _unknown_names("heatmaps: models", mapped_models, model_names, "model(s)")
        for model in mapped_models:
            if model in families and not families[model].has_layers:
                problems.append(
                    _problem(
                        f"`heatmaps: models` lists {model!r}, whose family {models[model].get('family')!r} has no layers to attribute.",
                        "leave it out of `heatmaps: models`.",
                    )
                )
    problems += _unknown_names("heatmaps: target_layers", list(_mapping(heatmaps.get("target_layers"))), model_names, "model(s)")
    return problems


def check_config(config: Any, schema_path: str | Path) -> None:
    """Raise one :class:`VlmprobeError` listing every problem of ``config``, the schema's and the
    cross-checks' together (nothing runs before it passes)."""
    schema = load_schema(schema_path)
    problems = config_problems(config, schema)
    problems += [line for line in cross_check_problems(with_defaults(config, schema)) if line not in problems]
    if problems:
        raise configuration_error(problems)


def configuration_error(problems: list[str]) -> VlmprobeError:
    listing = "\n".join(f"  - {line}" for line in problems)
    return VlmprobeError(
        f"The configuration has {len(problems)} problem(s); nothing was run:\n{listing}\n"
        f"Edit the config file(s) given to snakemake; every key is documented in {SCHEMA_NAME}."
    )
