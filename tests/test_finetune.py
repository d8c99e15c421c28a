"""Full fine-tuning: it learns on synthetic-cxr, a killed run resumes to the same bits, its files load back."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from support.multilabel import Interrupted, finetune, interrupt_after, synthetic_manifest

from vlmprobe.embed import embed_manifest
from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.embeddings import read_embeddings
from vlmprobe.formats.predictions import read_predictions
from vlmprobe.models.finetuned import linear_layer, load_finetuned
from vlmprobe.multilabel.finetune import FinetuneSettings
from vlmprobe.multilabel.metrics import evaluate_files
from vlmprobe.multilabel.zero_shot import run_zero_shot_files

TINY_VIT = {"family": "open_clip", "name": "vlmprobe-vit-tiny", "pretrained": None}
TINY_RN = {"family": "open_clip", "name": "vlmprobe-rn-tiny", "pretrained": None}
EASY_PREVALENCE = {"opacity": 0.3, "cardiomegaly": 0.3, "effusion": 0.25, "nodule": 0.2, "pneumothorax": 0.2}


@pytest.fixture(scope="module")
def small_manifest(tmp_path_factory):
    return synthetic_manifest(tmp_path_factory.mktemp("ft-small"), 80, 32, EASY_PREVALENCE)


def test_finetuning_learns_beyond_zero_shot_and_chance(tmp_path):
    """A small convolutional open_clip model, random-initialised, trained on 500 synthetic radiographs (32 px).

    In trial runs (500 images, seed 1) the test macro F1 was 0.62 against 0.40 for predicting every label
    and ROC-AUC 0.83; a random-initialised tiny ViT does not learn in this budget (AUC ~0.55).
    """
    manifest = synthetic_manifest(tmp_path / "data", 500, 64, EASY_PREVALENCE, seed=1)
    spec = {**TINY_RN, "image_size": 32}
    settings = FinetuneSettings(epochs=10, patience=10, batch_size=32, lr=2e-3, head_lr=2e-3, weight_decay=0.01, image_size=32)
    info = finetune(manifest, TINY_RN, tmp_path / "ft", settings)
    ft = evaluate_files(manifest, tmp_path / "ft" / "ft.predictions.parquet", tmp_path / "ft" / "embeddings.parquet", None, n_resamples=0)

    frozen = tmp_path / "frozen.parquet"
    embed_manifest(manifest, "tiny", spec, frozen, device="cpu", batch_size=100, num_workers=0, threads=1)
    run_zero_shot_files(manifest, frozen, "tiny", spec, tmp_path / "zs.parquet", ["a chest X-ray showing {label}."])
    zs = evaluate_files(manifest, tmp_path / "zs.parquet", frozen, spec, n_resamples=0)

    prevalence = np.array([row["prevalence"] for row in ft["per_label"]])
    chance = {
        "all labels": float(np.mean(2 * prevalence / (1 + prevalence))),  # predict every label for every image
        "at prevalence": float(np.mean(prevalence)),  # expected F1 of guessing each label at its own rate
    }
    f1 = ft["metrics"]["f1_macro"]
    assert f1 > zs["metrics"]["f1_macro"] + 0.1, (f1, zs["metrics"]["f1_macro"], info["history"])
    assert f1 > max(chance.values()) + 0.1, (f1, chance, info["history"])
    assert ft["metrics"]["roc_auc_macro"] > 0.7
    assert info["best_epoch"] is not None and info["spec_used"]["image_size"] == 32
    table = read_embeddings(tmp_path / "ft" / "embeddings.parquet", TINY_RN)  # carries the configured spec
    assert table.metadata["finetuned"] is True and table.matrix.shape[0] == 500


def test_a_killed_run_resumes_to_the_same_bits(small_manifest, tmp_path, caplog):
    spec = TINY_VIT
    settings = FinetuneSettings(epochs=2, patience=5, batch_size=16, lr=1e-3, head_lr=1e-3, image_size=32)
    straight = finetune(small_manifest, spec, tmp_path / "straight", settings)

    with pytest.raises(Interrupted):
        finetune(small_manifest, spec, tmp_path / "killed", settings, after_epoch=interrupt_after(1))
    resume = tmp_path / "killed" / "resume"
    assert (resume / "last.pt").is_file() and not (tmp_path / "killed" / "encoder.safetensors").exists()
    with caplog.at_level(logging.INFO, logger="vlmprobe.multilabel.finetune"):
        resumed = finetune(small_manifest, spec, tmp_path / "killed", settings)
    assert "resuming tiny" in caplog.text
    assert resumed["resumed_after_epochs"] == [1] and straight["resumed_after_epochs"] == []
    assert not resume.exists()  # cleaned up after success

    a, b = load_file(tmp_path / "straight" / "encoder.safetensors"), load_file(tmp_path / "killed" / "encoder.safetensors")
    assert a.keys() == b.keys() and all(key.startswith("clip.visual.") for key in a)  # the text tower is not saved
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for name in ("head.safetensors",):
        ha, hb = load_file(tmp_path / "straight" / name), load_file(tmp_path / "killed" / name)
        assert all(torch.equal(ha[key], hb[key]) for key in ha)
    pa_, pb = read_predictions(tmp_path / "straight" / "ft.predictions.parquet"), read_predictions(tmp_path / "killed" / "ft.predictions.parquet")
    np.testing.assert_array_equal(pa_.scores, pb.scores)
    np.testing.assert_array_equal(pa_.predicted, pb.predicted)
    assert [h["val_loss"] for h in straight["history"]] == [h["val_loss"] for h in resumed["history"]]

    # a checkpoint made with other settings is not resumed from
    with pytest.raises(Interrupted):
        finetune(small_manifest, spec, tmp_path / "changed", settings, after_epoch=interrupt_after(1))
    other = FinetuneSettings(**{**settings.__dict__, "epochs": 1, "lr": 5e-4})
    with caplog.at_level(logging.INFO, logger="vlmprobe.multilabel.finetune"):
        fresh = finetune(small_manifest, spec, tmp_path / "changed", other)
    assert fresh["resumed_after_epochs"] == [] and "ignoring the checkpoint" in caplog.text

    # the files rebuild the fine-tuned model: same embeddings, and the head as a torch layer
    tuned = load_finetuned(tmp_path / "straight" / "encoder.safetensors", tmp_path / "straight" / "head.safetensors")
    table = read_embeddings(tmp_path / "straight" / "embeddings.parquet")
    again = embed_manifest_rows(tuned.encoder, small_manifest, 4)
    np.testing.assert_allclose(again, table.matrix[:4], rtol=1e-4, atol=1e-5)
    layer = linear_layer(tuned.head)
    with torch.no_grad():
        logits = layer(torch.as_tensor(again)).numpy()
    np.testing.assert_allclose(logits, tuned.head.logits(again), rtol=1e-4, atol=1e-5)
    assert tuned.head.source == "finetune" and tuned.head.thresholds is not None
    info = json.loads((tmp_path / "straight" / "finetune.json").read_text())
    assert info["decision"]["rule"] == "per-label threshold" and set(info["decision"]["thresholds"]) == set(info["classes"])


def embed_manifest_rows(encoder, manifest, n):
    from vlmprobe.formats.manifest import read_manifest
    from vlmprobe.models.encode import embed_images

    paths = read_manifest(manifest)[0].column("path").to_pylist()[:n]
    return embed_images(encoder, paths, "cpu", batch_size=n, num_workers=0, precision="fp32", progress=False)


def test_models_without_trainable_weights_are_refused(small_manifest, tmp_path):
    with pytest.raises(VlmprobeError, match="cannot be fine-tuned"):
        finetune(small_manifest, {"family": "pixels"}, tmp_path, FinetuneSettings(epochs=1))
    with pytest.raises(VlmprobeError, match="monitor"):
        finetune(small_manifest, TINY_VIT, tmp_path, FinetuneSettings(epochs=1, monitor="accuracy"))
    with pytest.raises(VlmprobeError, match="validation"):
        finetune(small_manifest, TINY_VIT, tmp_path, FinetuneSettings(epochs=1, validation_fold=7))
