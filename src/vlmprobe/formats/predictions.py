"""Per-sample test predictions, the files paired comparisons read: the linear probe's (:class:`ProbePredictions`)
and each multi-label setting's (:class:`Predictions`).

``results/linear_probe/{dataset}/{model}.predictions.parquet`` sits beside the probe's JSON and holds
one row per test sample, in manifest order:

* ``sample_id``;
* ``label``: the true class;
* ``fold_0`` ... ``fold_{k-1}``: the class predicted by each of the k fold models (each trained on the
  other k-1 CV folds of the training rows, the models whose test scores the poster's "mean ± std" is
  over);
* ``final``: the class predicted by the model fitted on all training rows.

A probe without fold models (the probes stage's kNN and tuned logistic regression,
``results/probes/{dataset}/{model}.{probe}.predictions.parquet``) writes its one model on all training rows
as both ``fold_0`` and ``final`` (``n_folds`` = 1), so the paired comparisons read it the same way.

The schema metadata (key ``vlmprobe``) holds ``classes`` (sorted, the probe's order), ``n_folds`` and
what the writer adds (dataset, model, protocol, seed). Classes are stored as their names, so a file
reads without the manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError

METADATA_KEY = b"vlmprobe"


@dataclass
class ProbePredictions:
    """Class indices (into ``classes``): ``labels`` (n,), ``folds`` (n, k), ``final`` (n,)."""

    sample_ids: list[str]
    labels: np.ndarray
    folds: np.ndarray
    final: np.ndarray
    classes: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_folds(self) -> int:
        return int(self.folds.shape[1])


def from_probe_result(result: dict[str, Any], sample_ids: list[str], labels: list[str], metadata: dict[str, Any] | None = None) -> ProbePredictions:
    """The test predictions of a :func:`vlmprobe.linear_probe.probe.run_linear_probe` result.

    ``sample_ids`` and ``labels`` are the manifest's, in the row order the probe was given.
    """
    classes = list(result["classes"])
    rows = np.asarray(result["predictions"]["test_rows"], dtype=np.int64)
    index = {name: i for i, name in enumerate(classes)}
    return ProbePredictions(
        sample_ids=[sample_ids[int(row)] for row in rows],
        labels=np.asarray([index[str(labels[int(row)])] for row in rows], dtype=np.int64),
        folds=np.asarray(result["predictions"]["fold_models"], dtype=np.int64).T.reshape(rows.size, -1),
        final=np.asarray(result["predictions"]["final_model"], dtype=np.int64),
        classes=classes,
        metadata=dict(metadata or {}),
    )


def write_probe_predictions(path: str | Path, predictions: ProbePredictions) -> None:
    import pyarrow as pa

    from vlmprobe.io import write_parquet

    names = np.asarray(predictions.classes, dtype=object)
    columns: dict[str, Any] = {
        "sample_id": pa.array(predictions.sample_ids, pa.string()),
        "label": pa.array(names[predictions.labels].tolist(), pa.string()),
    }
    for k in range(predictions.n_folds):
        columns[f"fold_{k}"] = pa.array(names[predictions.folds[:, k]].tolist(), pa.string())
    columns["final"] = pa.array(names[predictions.final].tolist(), pa.string())
    metadata = {**predictions.metadata, "classes": list(predictions.classes), "n_folds": predictions.n_folds}
    table = pa.table(columns).replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True, default=str)})
    write_parquet(path, table)


def read_probe_predictions(path: str | Path) -> ProbePredictions:
    from vlmprobe.io import read_parquet

    table, metadata = read_parquet(path, METADATA_KEY, "Linear-probe predictions")
    classes = list(metadata.get("classes", []))
    n_folds = int(metadata.get("n_folds", 0))
    index = {name: i for i, name in enumerate(classes)}

    def indices(column: str) -> np.ndarray:
        try:
            return np.asarray([index[value] for value in table.column(column).to_pylist()], dtype=np.int64)
        except KeyError as error:
            raise VlmprobeError(f"Linear-probe predictions {str(path)!r}: column {column!r} holds a class not in its metadata.", "delete the file and re-run the workflow.") from error

    return ProbePredictions(
        sample_ids=table.column("sample_id").to_pylist(),
        labels=indices("label"),
        folds=np.stack([indices(f"fold_{k}") for k in range(n_folds)], axis=1) if n_folds else np.zeros((table.num_rows, 0), np.int64),
        final=indices("final"),
        classes=classes,
        metadata=metadata,
    )




@dataclass
class Predictions:
    """Scores and decisions of one setting for the test samples, columns in the order of ``classes``.

    Stored as ``results/multilabel/{dataset}/{model}/{setting}.predictions.parquet``: columns
    ``sample_id``, ``scores`` (fixed-size list of float64), ``predicted`` (fixed-size list of bool); the
    schema metadata (key ``vlmprobe``) holds ``classes``, ``setting``, ``multilabel``, ``score_kind``,
    ``decision`` (rule and thresholds), ``wall_time_s`` and setting-specific details.
    """

    sample_ids: list[str]
    scores: np.ndarray
    predicted: np.ndarray
    classes: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)


def write_predictions(path: str | Path, predictions: Predictions) -> None:
    import pyarrow as pa

    from vlmprobe.io import write_parquet

    scores = np.ascontiguousarray(predictions.scores, dtype=np.float64)
    predicted = np.ascontiguousarray(predictions.predicted, dtype=bool)
    n, n_classes = scores.shape
    if predicted.shape != scores.shape or n != len(predictions.sample_ids) or n_classes != len(predictions.classes):
        raise ValueError("predictions: sample ids, scores, decisions and classes do not match")
    metadata = {**predictions.metadata, "classes": list(predictions.classes)}
    table = pa.table(
        {
            "sample_id": pa.array(predictions.sample_ids, pa.string()),
            "scores": pa.FixedSizeListArray.from_arrays(pa.array(scores.reshape(-1)), n_classes),
            "predicted": pa.FixedSizeListArray.from_arrays(pa.array(predicted.reshape(-1)), n_classes),
        }
    )
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True, default=_json_default)})
    write_parquet(path, table)


def read_predictions(path: str | Path) -> Predictions:
    from vlmprobe.io import read_parquet

    table, metadata = read_parquet(path, METADATA_KEY, "Predictions")
    classes = list(metadata.get("classes", []))
    n_classes = len(classes)

    def matrix(column: str, dtype) -> np.ndarray:
        values = table.column(column).combine_chunks().values.to_numpy(zero_copy_only=False)
        return values.astype(dtype).reshape(-1, n_classes) if n_classes else np.zeros((table.num_rows, 0), dtype)

    return Predictions(
        sample_ids=table.column("sample_id").to_pylist(),
        scores=matrix("scores", np.float64),
        predicted=matrix("predicted", bool),
        classes=classes,
        metadata=metadata,
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
