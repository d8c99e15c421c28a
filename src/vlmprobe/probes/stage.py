"""The probes stage: one (dataset, model) job -> every reading of its embedding table, and the per-sample test
predictions of kNN and the tuned probe (``vlmprobe.formats.predictions``, read by the paired comparisons)."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.predictions import ProbePredictions
from vlmprobe.probes.few_shot import simpleshot
from vlmprobe.probes.inputs import probe_rows
from vlmprobe.probes.knn import knn_predict
from vlmprobe.probes.logistic import scores, tuned_logistic
from vlmprobe.probes.robustness import robustness_index
from vlmprobe.probes.subgroups import attribute_groups, subgroup_gaps

log = logging.getLogger(__name__)

PREDICTING_PROBES = ("knn", "logistic")  # the readings with one prediction per test sample


def _column(manifest, name: str, where: str) -> list[Any]:
    if name not in manifest.columns:
        meta = [c for c in manifest.columns if c.startswith("meta_")]
        raise VlmprobeError(f"{where}: the manifest has no column {name!r} (its meta columns: {meta}).", "name one of them, or keep that column in the dataset's `meta_columns`.")
    return manifest[name].to_list()


def run_probes(
    manifest,
    matrix: np.ndarray,
    settings: dict[str, Any],
    *,
    nuisances: list[str] = (),
    subgroups: list[str] = (),
    group_split: tuple[list[str], list[Any], dict[str, Any]] | None = None,
    group_column: str | None = None,
    seed: int = 0,
    where: str = "Probes",
) -> tuple[dict[str, Any], dict[str, ProbePredictions]]:
    """Every enabled reading of one embedding table: (the result record, {probe: test predictions})."""
    labels = manifest["labels"].to_list()
    for name in [*nuisances, *subgroups]:
        _column(manifest, name, where)
    if group_split is not None:
        split, fold, _ = group_split
        level = "group"
    else:
        split, fold, level = manifest["split"].to_list(), manifest["fold"].to_list(), "image"
    rows = probe_rows(matrix, labels, split, fold, level, where)
    n_classes = len(rows.classes)
    x_train, y_train = rows.x[rows.train_rows], rows.y[rows.train_rows]
    x_test, y_test = rows.x[rows.test_rows], rows.y[rows.test_rows]
    confidence, n_resamples = settings["confidence"], settings["n_resamples"]
    result: dict[str, Any] = {
        "split_level": level,
        "classes": rows.classes,
        "n_train": int(rows.train_rows.size),
        "n_test": int(rows.test_rows.size),
        "n_folds": int(np.unique(rows.fold_of_train).size),
        "embed_dim": int(rows.x.shape[1]),
    }
    # time per reading goes to the log, not the result: results are the same bytes run to run, on any executor
    seconds: dict[str, float] = {}
    predicted: dict[str, np.ndarray] = {}

    if settings["knn"]["enabled"]:
        started = time.perf_counter()
        k, temperature = settings["knn"]["k"], settings["knn"]["temperature"]
        predicted["knn"], _ = knn_predict(x_train, y_train, x_test, n_classes, k, temperature)
        result["knn"] = {"k": int(min(k, x_train.shape[0])), "temperature": temperature, "test": scores(y_test, predicted["knn"])}
        seconds["knn"] = time.perf_counter() - started
    if settings["few_shot"]["enabled"]:
        started = time.perf_counter()
        block = settings["few_shot"]
        result["few_shot"] = simpleshot(x_train, y_train, x_test, y_test, n_classes, block["shots"], block["draws"], seed, confidence)
        seconds["few_shot"] = time.perf_counter() - started
    if settings["logistic"]["enabled"]:
        started = time.perf_counter()
        block = settings["logistic"]
        tuned = tuned_logistic(rows.x, rows.y, rows.train_rows, rows.test_rows, rows.fold_of_train, block["Cs"], block["max_iter"])
        predicted["logistic"] = tuned.pop("predictions")
        result["logistic"] = tuned
        seconds["logistic"] = time.perf_counter() - started
    if settings["subgroups"]["enabled"] and subgroups and predicted:
        started = time.perf_counter()
        block = settings["subgroups"]
        result["subgroups"] = {}
        for attribute in subgroups:
            values = _column(manifest, attribute, where)
            groups, how = attribute_groups([values[r] for r in rows.test_rows], block["max_levels"], block["bins"])
            result["subgroups"][attribute] = {"grouped_by": how}
            for probe, prediction in predicted.items():
                result["subgroups"][attribute][probe] = subgroup_gaps(
                    y_test, prediction, groups, n_classes, min_group_size=block["min_group_size"], n_resamples=n_resamples, confidence=confidence, seed=seed
                )
        seconds["subgroups"] = time.perf_counter() - started
    if settings["robustness"]["enabled"] and nuisances:
        started = time.perf_counter()
        groups = _column(manifest, group_column, where) if group_column else None
        diagnosis = [names[0] for names in labels]
        result["robustness"] = {
            nuisance: robustness_index(
                rows.x, diagnosis, _column(manifest, nuisance, where), settings["robustness"]["k"], groups, n_resamples=n_resamples, confidence=confidence, seed=seed
            )
            for nuisance in nuisances
        }
        seconds["robustness"] = time.perf_counter() - started

    log.info("seconds per reading: %s", ", ".join(f"{name} {value:.2f}" for name, value in seconds.items()))
    sample_ids = manifest["sample_id"].to_list()
    test_ids = [sample_ids[r] for r in rows.test_rows]
    predictions = {
        probe: ProbePredictions(
            sample_ids=test_ids,
            labels=y_test.astype(np.int64),
            folds=values[:, None].astype(np.int64),
            final=values.astype(np.int64),
            classes=list(rows.classes),
            metadata={"probe": probe, "split_level": level, "seed": seed},
        )
        for probe, values in predicted.items()
    }
    return result, predictions


