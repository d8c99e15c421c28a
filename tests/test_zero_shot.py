"""Zero-shot: prompts, ensembling, decision rules, and a random-initialised tiny open_clip model end to end."""

from __future__ import annotations

import numpy as np
import pytest
from support.multilabel import synthetic_manifest

from vlmprobe.embed import embed_manifest
from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.predictions import read_predictions
from vlmprobe.models import family_of
from vlmprobe.models.base import NO_TEXT_TOWER
from vlmprobe.models.prompts import class_text_embeddings, render_prompts
from vlmprobe.multilabel.metrics import evaluate_files
from vlmprobe.multilabel.zero_shot import cosine_scores, decide, run_zero_shot_files

TINY_VIT = {"family": "open_clip", "name": "vlmprobe-vit-tiny", "pretrained": None}
PIXELS = {"family": "pixels", "image_size": 8}


@pytest.fixture(scope="module")
def cxr_manifest(tmp_path_factory):
    return synthetic_manifest(tmp_path_factory.mktemp("zs"), 80, 32)


def test_prompts_replace_the_label_and_check_templates():
    prompts = render_prompts(["pleural_effusion", "normal"], ["a chest X-ray showing {label}.", "{label}"], {"normal": "no finding"})
    assert prompts == [["a chest X-ray showing pleural effusion.", "pleural effusion"], ["a chest X-ray showing no finding.", "no finding"]]
    with pytest.raises(VlmprobeError, match="placeholder"):
        render_prompts(["a"], ["a chest X-ray"])
    with pytest.raises(VlmprobeError, match="does not have"):
        render_prompts(["a"], ["{label}"], {"b": "bee"})


def test_prompt_ensemble_is_the_normalised_mean_of_normalised_prompts():
    vectors = {"x1": [3.0, 0.0], "x2": [0.0, 1.0], "y1": [0.0, -2.0]}
    text = class_text_embeddings(lambda texts: np.array([vectors[t] for t in texts]), [["x1", "x2"], ["y1"]])
    np.testing.assert_allclose(text, [[np.sqrt(0.5), np.sqrt(0.5)], [0.0, -1.0]])
    cosines = cosine_scores(np.array([[2.0, 2.0], [0.0, 5.0]]), text)
    np.testing.assert_allclose(cosines, [[1.0, -np.sqrt(0.5)], [np.sqrt(0.5), -1.0]])
    with pytest.raises(VlmprobeError, match="same open_clip model"):
        cosine_scores(np.zeros((2, 3)), text)


def test_decision_rules():
    cosines = np.array([[0.30, 0.28, 0.25], [0.10, -0.05, 0.02]])
    # sigmoid at 0.5 is cos >= 0 whatever the scale: the paper's all-positive behaviour on positive cosines
    np.testing.assert_array_equal(decide(cosines, True, "sigmoid", 0.5, logit_scale=100.0), cosines >= 0)
    np.testing.assert_array_equal(decide(cosines, True, "top1"), [[1, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(decide(cosines, True, "cosine", 0.26), [[1, 1, 0], [0, 0, 0]])
    softmax = decide(cosines, True, "softmax", 1 / 3, logit_scale=100.0)
    np.testing.assert_array_equal(softmax, [[1, 0, 0], [1, 0, 0]])  # the top label is always kept
    np.testing.assert_array_equal(decide(cosines, False, "sigmoid", 0.5), [[1, 0, 0], [1, 0, 0]])  # multi-class: arg-max
    with pytest.raises(VlmprobeError, match="Unknown zero-shot rule"):
        decide(cosines, True, "vote")


def test_only_text_tower_families_do_zero_shot():
    assert family_of("vit", TINY_VIT).has_text_tower
    assert not family_of("pixels", PIXELS).has_text_tower
    assert not family_of("resnet", {"family": "timm", "name": "resnet18"}).has_text_tower


def test_zero_shot_end_to_end_with_a_random_tiny_open_clip_model(cxr_manifest, tmp_path):
    embeddings = tmp_path / "vit.parquet"
    embed_manifest(cxr_manifest, "vit-tiny", TINY_VIT, embeddings, device="cpu", batch_size=40, num_workers=0, threads=1)
    predictions = tmp_path / "zs.predictions.parquet"
    templates = ["a chest X-ray showing {label}.", "a radiograph with {label}."]
    run_zero_shot_files(cxr_manifest, embeddings, "vit-tiny", TINY_VIT, predictions, templates, {"normal": "no findings"}, rule="sigmoid", threshold=0.5)
    stored = read_predictions(predictions)
    assert stored.metadata["setting"] == "zs" and stored.metadata["score_kind"] == "cosine similarity"
    assert stored.metadata["details"]["prompts"]["normal"] == ["a chest X-ray showing no findings.", "a radiograph with no findings."]
    assert np.abs(stored.scores).max() <= 1.0 + 1e-9
    np.testing.assert_array_equal(stored.predicted, stored.scores >= 0)  # sigmoid(s*cos) >= 0.5
    result = evaluate_files(cxr_manifest, predictions, embeddings, TINY_VIT, n_resamples=20)
    assert result["n_test"] == len(stored.sample_ids)
    assert result["metrics"]["predicted_labels_per_sample"] == pytest.approx(stored.predicted.sum(axis=1).mean())
    assert 0.0 <= result["metrics"]["f1_macro"] <= 1.0

    # the same job again gives the same numbers: the random text tower is the image tower's partner
    run_zero_shot_files(cxr_manifest, embeddings, "vit-tiny", TINY_VIT, tmp_path / "again.parquet", templates, {"normal": "no findings"})
    np.testing.assert_array_equal(read_predictions(tmp_path / "again.parquet").scores, stored.scores)

    # a table made by other weights (another initialisation) is caught, not scored against foreign text embeddings
    foreign = tmp_path / "foreign.parquet"
    embed_manifest(cxr_manifest, "vit-tiny", TINY_VIT, foreign, device="cpu", batch_size=40, num_workers=0, threads=1, seed=1)
    with pytest.raises(VlmprobeError, match="does not reproduce the embedding table"):
        run_zero_shot_files(cxr_manifest, foreign, "vit-tiny", TINY_VIT, tmp_path / "never.parquet")

    # a model without a text tower is refused with the reason
    pixel_table = tmp_path / "pixels.parquet"
    embed_manifest(cxr_manifest, "pixels", PIXELS, pixel_table, device="cpu", batch_size=40, num_workers=0, threads=1)
    with pytest.raises(VlmprobeError, match=NO_TEXT_TOWER.split(" (")[0]):
        run_zero_shot_files(cxr_manifest, pixel_table, "pixels", PIXELS, tmp_path / "never.parquet")
