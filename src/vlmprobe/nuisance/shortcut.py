"""Shortcut-sensitivity curve: how much a diagnostic probe leans on a nuisance that agreed with the diagnosis.

:func:`shortcut_curve` asks how much a diagnostic probe's test accuracy depends on a binary nuisance
(the synthetic-cxr burned-in marker) that agreed with a binary diagnosis in training. For every
*training agreement rate* ``r`` it draws, from the manifest's training rows, ``n`` rows per class of which
``round(r n)`` carry the marker state that agrees with the class (marker present with the finding,
absent without it) and the rest the other state; ``n`` is the largest size every rate allows, so all
points have the same training size and class balance. The probe (the classifier above) is fitted and
scored on the test rows, whose four (class, agrees) cells are re-weighted to a *test agreement* ``a``:
balanced accuracy = mean over the classes of ``a * acc(class, agrees) + (1 - a) * acc(class, disagrees)`` -
the expected balanced accuracy on a test population with that agreement, computed from all test rows.
Three test conditions per ``r``: ``same`` (``a = r``), ``removed`` (``a = 0.5``) and ``reversed``
(``a = 1 - r``). ``repeats`` seeded draws per rate give a mean and std. A probe that uses the marker gains
on ``same`` and loses on ``reversed`` as ``r`` grows towards 1; one that reads only the finding stays flat.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.nuisance.probes import fit_predict, nuisance_columns_problem

DEFAULT_RATES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _curve_size(agree: Mapping[int, int], disagree: Mapping[int, int], rates: Sequence[float]) -> int:
    """Largest rows per class that every rate can draw: ``round(r n)`` agreeing, ``n - round(r n)`` not."""
    best = min(agree[c] + disagree[c] for c in (0, 1))
    for n in range(best, 0, -1):
        if all(round(r * n) <= agree[c] and n - round(r * n) <= disagree[c] for r in rates for c in (0, 1)):
            return n
    return 0


def shortcut_curve(
    x: np.ndarray,
    diagnosis: np.ndarray,
    marker: np.ndarray,
    split: Sequence[str],
    rates: Sequence[float] = DEFAULT_RATES,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Balanced test accuracy of a diagnostic probe trained where the marker agrees with the diagnosis at each rate.

    ``diagnosis`` and ``marker`` are booleans per row (the finding present; the marker burned in). See the
    module docstring for the design; returns the per-rate rows (mean, std over ``repeats``) and the sizes.
    """
    diagnosis = np.asarray(diagnosis, dtype=bool)
    marker = np.asarray(marker, dtype=bool)
    split = np.asarray(split)
    rates = [float(r) for r in rates]
    if not rates or any(not 0.0 <= r <= 1.0 for r in rates):
        raise VlmprobeError(f"shortcut curve rates {rates} must lie in [0, 1].", "give agreement rates such as [0.5, 0.7, 0.9, 1.0].")
    agrees = diagnosis == marker
    train, test = split == "train", split == "test"
    pool = {(c, a): np.flatnonzero(train & (diagnosis == bool(c)) & (agrees == a)) for c in (0, 1) for a in (True, False)}
    cells = {(c, a): np.flatnonzero(test & (diagnosis == bool(c)) & (agrees == a)) for c in (0, 1) for a in (True, False)}
    empty = [f"{'with' if c else 'without'} the finding, marker {'agreeing' if a else 'disagreeing'}" for (c, a), rows in cells.items() if rows.size == 0]
    if empty:
        raise VlmprobeError(
            f"Shortcut curve: no test row {' / '.join(empty)}; the four (finding, marker) cells all need test rows.",
            "use a shortcut rate strictly between 0 and 1 and enough images (n_images) for the finding's prevalence.",
        )
    n = _curve_size({c: pool[(c, True)].size for c in (0, 1)}, {c: pool[(c, False)].size for c in (0, 1)}, rates)
    if n < 2:
        raise VlmprobeError(
            "Shortcut curve: the training rows allow fewer than 2 rows per class at some rate.",
            "use more images (n_images), a more prevalent finding, or a shortcut rate nearer 0.5.",
        )
    rng = np.random.default_rng(seed)
    points = []
    for rate in rates:
        n_agree = round(rate * n)
        scores: dict[str, list[float]] = {"same": [], "removed": [], "reversed": []}
        for _ in range(repeats):
            chosen = np.concatenate(
                [rng.choice(pool[(c, True)], n_agree, replace=False) for c in (0, 1)]
                + [rng.choice(pool[(c, False)], n - n_agree, replace=False) for c in (0, 1)]
            )
            test_rows = np.concatenate(list(cells.values()))
            decision = fit_predict(x, chosen, np.where(diagnosis[chosen], 1.0, -1.0)[:, None], test_rows)
            predicted = dict(zip(test_rows.tolist(), (decision[:, 0] > 0).tolist()))
            accuracy = {key: float(np.mean([predicted[i] == bool(key[0]) for i in rows])) for key, rows in cells.items()}

            def at(agreement: float) -> float:
                return float(np.mean([agreement * accuracy[(c, True)] + (1 - agreement) * accuracy[(c, False)] for c in (0, 1)]))

            scores["same"].append(at(rate))
            scores["removed"].append(at(0.5))
            scores["reversed"].append(at(1.0 - rate))
        points.append(
            {
                "train_agreement": rate,
                **{f"{name}_mean": float(np.mean(values)) for name, values in scores.items()},
                **{f"{name}_std": float(np.std(values)) for name, values in scores.items()},
            }
        )
    return {
        "rates": rates,
        "repeats": repeats,
        "seed": seed,
        "n_train_per_class": n,
        "train_pool": {f"{'finding' if c else 'no_finding'}_{'agree' if a else 'disagree'}": int(rows.size) for (c, a), rows in pool.items()},
        "test_cells": {f"{'finding' if c else 'no_finding'}_{'agree' if a else 'disagree'}": int(rows.size) for (c, a), rows in cells.items()},
        "test_conditions": {"same": "test agreement = training agreement", "removed": "test agreement 0.5", "reversed": "test agreement = 1 - training agreement"},
        "points": points,
    }


def shortcut_curve_for_table(
    manifest_path: str | Path,
    embedding_path: str | Path,
    output_path: str | Path,
    finding: str,
    column: str,
    rates: Sequence[float],
    repeats: int,
    dataset: str,
    model: str,
    expected_spec: dict[str, Any] | None = None,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """The curve for one (dataset, model): ``finding`` (a label) against the yes/no ``column`` (``meta_marker``)."""
    from threadpoolctl import threadpool_limits

    from vlmprobe.formats.embeddings import aligned
    from vlmprobe.io import write_json

    manifest, matrix, manifest_meta, _ = aligned(manifest_path, embedding_path, expected_spec)
    nuisance_columns_problem(list(manifest.columns), [column], dataset)
    diagnosis = np.array([finding in names for names in manifest["labels"].to_list()])
    marker = np.array([value == "yes" for value in manifest[column].to_list()])
    with threadpool_limits(limits=max(1, n_jobs), user_api="blas"):
        result = shortcut_curve(matrix, diagnosis, marker, manifest["split"].to_list(), rates, repeats, int(manifest_meta.get("seed", 0)))
    result.update(dataset=dataset, model=model, finding=finding, column=column, observed_agreement=float(np.mean(diagnosis == marker)))
    write_json(output_path, result)
    return result
