"""What an explorer page shows: the layout of one UMAP cell, each point's tooltip fields, and the colourings.

Everything is computed here, in Python, and handed to the page as one JSON object, so the page's script only
draws: per point ``x``, ``y``, its sample id and thumbnail cell; per field (labels, split, group, ``meta_*``,
the linear probe's prediction) a list of values and one code per point; per colouring its categories, their
colours and one code per point. Codes keep a 28,000-point page a few megabytes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError

MISSING = "missing"
# Categorical colourings show this many categories; the rarest beyond them share one grey "other".
MAX_CATEGORIES = 20
# Numeric columns with more distinct values than MAX_CATEGORIES are coloured by quantile bins.
NUMERIC_BINS = 8
GREY = "#b0b0b0"
TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
TAB20 = [
    "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd", "#c5b0d5",
    "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d", "#17becf", "#9edae5",
]  # fmt: skip
VIRIDIS = ["#440154", "#46327e", "#365c8d", "#277f8e", "#1fa187", "#4ac16d", "#a0da39", "#fde725"]
CORRECT, WRONG, NOT_TESTED = "correct", "wrong", "not in the test split"
ALL_RIGHT, SOME_WRONG = "every label right", "some label wrong"
PROBE_FIELD = "linear probe"


def palette(n: int) -> list[str]:
    """The static figures' colours (matplotlib's tab10 / tab20), so a class has one colour everywhere."""
    if n <= 10:
        return TAB10[:n]
    return [TAB20[i % 20] for i in range(n)]


def is_missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def encode(values: Sequence[Any], order: Sequence[str] | None = None) -> tuple[list[str], list[int]]:
    """``(categories, codes)`` of a column: values as text, sorted (numbers by value), missing last."""
    texts = [MISSING if is_missing(v) else format_value(v) for v in values]
    if order is None:
        present = {t: v for t, v in zip(texts, values) if t != MISSING}
        numeric = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in present.values())
        order = sorted(present, key=lambda t: (present[t] if numeric else t))
    categories = list(order) + ([MISSING] if MISSING in texts and MISSING not in order else [])
    index = {name: i for i, name in enumerate(categories)}
    return categories, [index[t] for t in texts]


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def categorical_colouring(name: str, values: Sequence[Any], order: Sequence[str] | None = None, colours: Sequence[str] | None = None) -> dict[str, Any]:
    """A colouring by category; beyond MAX_CATEGORIES the rarest share a grey ``other (k values)``."""
    categories, codes = encode(values, order)
    real = [c for c in categories if c != MISSING]
    if len(real) > MAX_CATEGORIES:
        counts = Counter(codes)
        kept = sorted(sorted(range(len(real)), key=lambda c: -counts[c])[: MAX_CATEGORIES - 1])
        other = f"other ({len(real) - len(kept)} values)"
        new_categories = [real[c] for c in kept] + [other] + ([MISSING] if MISSING in categories else [])
        remap = {old: new for new, old in enumerate(kept)}
        missing_code = categories.index(MISSING) if MISSING in categories else -1
        codes = [remap.get(c, len(kept) + 1 if c == missing_code else len(kept)) for c in codes]
        categories = new_categories
        colour_list = palette(len(kept)) + [GREY]
    else:
        colour_list = list(colours) if colours is not None else palette(len(real))
    colour_list = colour_list + ([GREY] if MISSING in categories else [])
    return {"name": name, "categories": categories, "colours": colour_list, "codes": codes}


def numeric_colouring(name: str, values: Sequence[Any]) -> dict[str, Any]:
    """A colouring of a many-valued numeric column by quantile bins, on viridis."""
    numbers = np.array([np.nan if is_missing(v) else float(v) for v in values])
    present = numbers[~np.isnan(numbers)]
    edges = np.unique(np.quantile(present, np.linspace(0, 1, NUMERIC_BINS + 1)))
    bins = np.clip(np.searchsorted(edges, numbers, side="right") - 1, 0, len(edges) - 2)
    categories = [f"{edges[i]:.4g} to {edges[i + 1]:.4g}" for i in range(len(edges) - 1)]
    colours = [VIRIDIS[round(i * (len(VIRIDIS) - 1) / max(1, len(categories) - 1))] for i in range(len(categories))]
    codes = [int(b) for b in bins]
    if np.isnan(numbers).any():
        codes = [len(categories) if math.isnan(x) else c for x, c in zip(numbers, codes)]
        categories, colours = categories + [MISSING], colours + [GREY]
    return {"name": name, "categories": categories, "colours": colours, "codes": codes}


def column_colouring(name: str, values: Sequence[Any]) -> dict[str, Any]:
    present = [v for v in values if not is_missing(v)]
    numeric = bool(present) and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in present)
    if numeric and len(set(present)) > MAX_CATEGORIES:
        return numeric_colouring(name, values)
    return categorical_colouring(name, values)


def field(name: str, values: Sequence[Any]) -> dict[str, Any]:
    categories, codes = encode(values)
    return {"name": name, "categories": categories, "codes": codes}


def multilabel_summary(labels: Sequence[Sequence[str]], normal_class: str = "normal") -> list[str]:
    """``normal`` / ``one finding`` / ``several``, the static UMAP figures' categories of a multi-label dataset."""
    counts = [len([name for name in names if name != normal_class]) for names in labels]
    return ["normal" if c == 0 else "one finding" if c == 1 else "several" for c in counts]


def probe_outcomes(sample_ids: Sequence[str], predictions: Any) -> tuple[list[str], list[str | None]]:
    """Per sample: correct / wrong / not in the test split, and the class the probe predicted (final model)."""
    by_id = {
        sid: (predictions.classes[int(final)], predictions.classes[int(label)])
        for sid, final, label in zip(predictions.sample_ids, predictions.final, predictions.labels)
    }
    outcomes, predicted = [], []
    for sid in sample_ids:
        if sid in by_id:
            guess, truth = by_id[sid]
            outcomes.append(CORRECT if guess == truth else WRONG)
            predicted.append(guess)
        else:
            outcomes.append(NOT_TESTED)
            predicted.append("not tested")
    return outcomes, predicted


def multilabel_outcomes(sample_ids: Sequence[str], labels: Sequence[Sequence[str]], predictions: Any) -> tuple[list[str], list[str]]:
    """Per sample: every label right / some labels wrong / not in the test split, and the labels predicted."""
    by_id = {sid: row for row, sid in enumerate(predictions.sample_ids)}
    outcomes, predicted = [], []
    for sid, names in zip(sample_ids, labels):
        row = by_id.get(sid)
        if row is None:
            outcomes.append(NOT_TESTED)
            predicted.append("not tested")
            continue
        guess = [name for name, flag in zip(predictions.classes, predictions.predicted[row]) if flag]
        outcomes.append(ALL_RIGHT if set(guess) == set(names) else SOME_WRONG)
        predicted.append(", ".join(guess) or "none")
    return outcomes, predicted


def page_data(
    manifest: Any,
    classes: Sequence[str],
    multilabel: bool,
    sample_ids: Sequence[str],
    xy: np.ndarray,
    *,
    thumbnails: Any = None,
    thumbnail_prefix: str = "thumbnails/",
    predictions: Any = None,
    nuisances: Sequence[str] = (),
    group: str | None = None,
    title: str = "",
    cell: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The JSON object of one page. ``manifest`` is the polars manifest; ``sample_ids`` / ``xy`` the cell's
    points in the grid's order; ``thumbnails`` a :class:`vlmprobe.explore.thumbnails.ThumbnailIndex`;
    ``predictions`` the linear probe's :class:`vlmprobe.formats.predictions.ProbePredictions` (multi-class) or
    the multi-label study's ``lp`` :class:`vlmprobe.formats.predictions.Predictions`, or None."""
    row_of = {sid: i for i, sid in enumerate(manifest["sample_id"].to_list())}
    unknown = [sid for sid in sample_ids if sid not in row_of]
    if unknown:
        raise VlmprobeError(
            f"The UMAP layout has {len(unknown)} samples that are not in the manifest (e.g. {unknown[0]!r}).",
            "the layout is older than the manifest: delete results/umap/ for this dataset and re-run the workflow.",
        )
    rows = [row_of[sid] for sid in sample_ids]
    frame = manifest[rows]
    labels = [list(names) for names in frame["labels"].to_list()]
    meta_columns = [c for c in frame.columns if c.startswith("meta_")]

    parts = {", ".join(names): names for names in labels}
    fields = [field("labels", [", ".join(names) for names in labels]), field("split", frame["split"].to_list())]
    for column in ([group] if group else []) + [c for c in meta_columns if c != group]:
        fields.append(field(column, frame[column].to_list()))

    colourings = []
    if multilabel:
        colourings.append(categorical_colouring("label (findings)", multilabel_summary(labels), order=[c for c in ("normal", "one finding", "several") if c in set(multilabel_summary(labels))]))
        for name in classes:
            colourings.append(categorical_colouring(f"label: {name}", [name if name in names else f"no {name}" for names in labels], order=[name, f"no {name}"], colours=[TAB10[3], "#9ecae1"]))
    else:
        colourings.append(categorical_colouring("label", [names[0] for names in labels], order=sorted(set(classes) & {n[0] for n in labels})))
    if predictions is not None:
        if hasattr(predictions, "final"):  # the seed-002 linear probe (one class per sample)
            outcomes, predicted = probe_outcomes(sample_ids, predictions)
        else:  # the multi-label study's linear probe (a set of labels per sample)
            outcomes, predicted = multilabel_outcomes(sample_ids, labels, predictions)
        present = [c for c in (CORRECT, ALL_RIGHT, WRONG, SOME_WRONG, NOT_TESTED) if c in set(outcomes)]
        colours = {CORRECT: TAB10[2], ALL_RIGHT: TAB10[2], WRONG: TAB10[3], SOME_WRONG: TAB10[3], NOT_TESTED: "#d9d9d9"}
        colourings.append(categorical_colouring(PROBE_FIELD, outcomes, order=present, colours=[colours[c] for c in present]))
        fields.append(field(f"{PROBE_FIELD} predicted", predicted))
    for column in nuisances:
        if column in frame.columns:
            colourings.append({**column_colouring(column, frame[column].to_list()), "name": f"nuisance: {column}"})
    if group and group in frame.columns:
        colourings.append({**column_colouring(group, frame[group].to_list()), "name": f"group: {group}"})
    for column in meta_columns:
        if column not in nuisances and column != group:
            colourings.append(column_colouring(column, frame[column].to_list()))
    colourings.append(categorical_colouring("split", frame["split"].to_list()))

    xy = np.asarray(xy, dtype=np.float64)
    thumbs = None
    if thumbnails is not None:
        cell_of = {sid: i for i, sid in enumerate(thumbnails.sample_ids)}
        thumbs = {
            "size": thumbnails.size,
            "columns": thumbnails.columns,
            "sheets": [thumbnail_prefix + name for name in thumbnails.sheets],
            "cells": [cell_of.get(sid, -1) for sid in sample_ids],
        }
    return {
        "title": title,
        "cell": cell or {},
        "n": len(sample_ids),
        "ids": list(sample_ids),
        "x": [round(float(v), 4) for v in xy[:, 0]],
        "y": [round(float(v), 4) for v in xy[:, 1]],
        "fields": fields,
        # The label names behind each category of the "labels" field, so a selection counts each label once.
        "label_parts": [parts.get(category, []) for category in fields[0]["categories"]],
        "colourings": colourings,
        "thumbnails": thumbs,
        "notes": list(notes),
    }
