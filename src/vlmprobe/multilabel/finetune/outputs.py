"""Decisions on the test split and the five output files of a fine-tuning run.

The files and their formats are described in the package docstring.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.multilabel.finetune.checkpoints import trainable_state
from vlmprobe.multilabel.finetune.model import Run
from vlmprobe.multilabel.finetune.rows import Rows
from vlmprobe.multilabel.finetune.settings import FORMAT_VERSION, FinetuneOutputs


def decide_test_split(run: Run, rows: Rows, matrix: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, dict[str, Any]]:
    """``(head, scores of every row, test-split decisions, decision record)`` from the fine-tuned embeddings."""
    from vlmprobe.formats.heads import LinearHead, apply_thresholds, argmax_decisions
    from vlmprobe.multilabel.linear_probe import f1_optimal_thresholds
    from vlmprobe.multilabel.protocols import DECISION, row_minmax, row_minmax_decisions

    settings, classes, is_test = run.settings, rows.classes, rows.is_test
    linear = LinearHead(
        weight=run.head.weight.detach().cpu().double().numpy(),
        bias=run.head.bias.detach().cpu().double().numpy(),
        classes=classes,
        multilabel=rows.multilabel,
        source="finetune",
    )
    probabilities = linear.probabilities(matrix)
    if run.paper and rows.multilabel:
        probabilities = row_minmax(linear.logits(matrix))
        predicted = row_minmax_decisions(probabilities[is_test])
        decision = DECISION
    elif rows.multilabel:
        if settings.threshold == "tuned":
            linear.thresholds = f1_optimal_thresholds(rows.indicator[rows.is_val], probabilities[rows.is_val])
        else:
            linear.thresholds = np.full(len(classes), float(settings.threshold))
        predicted = apply_thresholds(probabilities[is_test], linear.thresholds)
        decision = {
            "rule": "per-label threshold" if settings.threshold == "tuned" else "fixed threshold",
            "description": (
                "sigmoid probability >= threshold; thresholds maximise F1 on the validation fold"
                if settings.threshold == "tuned"
                else f"sigmoid probability >= {float(settings.threshold)} for every label"
            ),
            "thresholds": dict(zip(classes, map(float, linear.thresholds), strict=True)),
        }
    else:
        predicted = argmax_decisions(probabilities[is_test])
        decision = {"rule": "argmax", "description": "the class of highest softmax probability"}
    return linear, probabilities, predicted, decision


def write_outputs(
    outputs: FinetuneOutputs,
    run: Run,
    rows: Rows,
    info: dict[str, Any],
    linear: Any,
    matrix: np.ndarray,
    scores: np.ndarray,
    predicted: np.ndarray,
    spec: dict[str, Any],
    identity: dict[str, Any] | None,
) -> None:
    """The five outputs (the package docstring), ``finetune.json`` last."""
    from vlmprobe.formats.embeddings import write_embeddings
    from vlmprobe.formats.heads import LinearHead, save_head
    from vlmprobe.formats.predictions import Predictions, write_predictions
    from vlmprobe.io import write_json
    from vlmprobe.models.checkpoints import sha256
    from vlmprobe.runtime import package_versions

    model_id, spec_used, is_test = info["model_id"], info["spec_used"], rows.is_test
    paper_scores = run.paper and rows.multilabel
    _write_encoder(outputs.encoder, trainable_state(run.module, run.prefix), model_id, spec_used, run.prefix)
    save_head(outputs.head, LinearHead(**{**linear.__dict__, "details": {"model_id": model_id, "best_epoch": info["best_epoch"], **(identity or {})}}))
    write_embeddings(
        outputs.embeddings,
        rows.sample_ids,
        matrix,
        {
            "model_id": model_id,
            "spec": spec,
            "family": spec.get("family"),
            "finetuned": True,
            "finetune_spec": spec_used,
            "checkpoint_sha256": sha256(outputs.encoder),
            "preprocess": run.encoder.preprocess_info,
            "dataset": rows.meta.get("dataset"),
            "device": run.device,
            "precision": info["precision"],
            "batch_size": run.settings.batch_size,
            "versions": package_versions(),
        },
    )
    write_predictions(
        outputs.predictions,
        Predictions(
            sample_ids=[rows.sample_ids[i] for i in np.flatnonzero(is_test)],
            scores=scores[is_test],
            predicted=predicted,
            classes=rows.classes,
            metadata={
                **(identity or {}),
                "setting": "ft",
                "protocol": run.settings.protocol,
                "multilabel": rows.multilabel,
                "score_kind": "row-min-max scaled logit" if paper_scores else "probability",
                "decision": info["decision"],
                "wall_time_s": info["wall_time_s"],
                "details": {
                    key: info[key]
                    for key in (
                        "settings",
                        "epochs_run",
                        "best_epoch",
                        "stopped_early",
                        "train_time_s",
                        "embed_time_s",
                        "device",
                        "precision",
                        "loss",
                        "loss_weights",
                    )
                },
            },
        ),
    )
    write_json(outputs.info, json.loads(json.dumps(info, default=_plain)))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def _write_encoder(path: Path, state: dict[str, Any], model_id: str, spec: dict[str, Any], prefix: str) -> None:
    from vlmprobe.io import write_safetensors

    metadata = {"model_id": model_id, "spec": json.dumps(spec, sort_keys=True), "prefix": prefix, "format": f"vlmprobe-finetune-{FORMAT_VERSION}"}
    write_safetensors(path, {key: value.contiguous() for key, value in state.items()}, metadata)

