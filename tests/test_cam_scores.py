"""Scoring functions on hand-made maps with known answers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from PIL import Image

from vlmprobe import cam_scores
from vlmprobe.cam_scores import (
    area_fraction,
    box_region,
    energy_fraction,
    iou,
    label_region,
    pointing_game,
    score_map,
    summarise,
    threshold_map,
)
from vlmprobe.errors import VlmprobeError

SHAPE = (10, 20)  # H, W
BOX = {"label": "nodule", "x0": 5, "y0": 2, "x1": 10, "y1": 6}  # 5 x 4 = 20 pixels of 200


def test_box_region_is_exclusive_and_clipped():
    region = box_region(SHAPE, [BOX])
    assert region.sum() == 20
    assert region[2, 5] and region[5, 9] and not region[6, 9] and not region[5, 10]
    clipped = box_region(SHAPE, [{"x0": -3, "y0": 8, "x1": 2, "y1": 30}])
    assert clipped.sum() == 2 * 2
    union = box_region(SHAPE, [BOX, {"x0": 8, "y0": 2, "x1": 12, "y1": 4}])
    assert union.sum() == 20 + 2 * 2  # overlap counted once
    assert box_region(SHAPE, [{"x0": 4, "y0": 4, "x1": 4, "y1": 9}]).sum() == 0


def test_pointing_game_hit_miss_and_ties():
    region = box_region(SHAPE, [BOX])
    cam = np.zeros(SHAPE)
    cam[3, 7] = 1.0
    assert pointing_game(cam, region) == 1.0
    cam[3, 7], cam[0, 0] = 0.5, 1.0
    assert pointing_game(cam, region) == 0.0
    cam = np.zeros(SHAPE)
    cam[3, 7] = cam[0, 0] = 1.0  # two maxima, one inside
    assert pointing_game(cam, region) == 0.5
    assert pointing_game(np.full(SHAPE, 0.3), region) == pytest.approx(20 / 200)  # flat map = chance


def test_threshold_rules():
    cam = np.arange(200, dtype=float).reshape(SHAPE)  # 0..199
    assert threshold_map(cam, 0.5).sum() == 100  # >= 99.5
    assert threshold_map(cam, 0.2, "top_fraction").sum() == 40
    assert threshold_map(np.ones(SHAPE), 0.5).all()
    with pytest.raises(VlmprobeError):
        threshold_map(cam, 0.5, "otsu")
    with pytest.raises(VlmprobeError):
        threshold_map(cam, 0.0)


def test_iou_known_values():
    region = box_region(SHAPE, [BOX])
    cam = region.astype(float)  # exactly the box
    assert iou(cam, region) == 1.0
    cam = np.zeros(SHAPE)
    cam[2:6, 5:8] = 1.0  # 12 of the 20 box pixels, nothing outside
    assert iou(cam, region) == pytest.approx(12 / 20)
    cam = np.zeros(SHAPE)
    cam[2:6, 8:13] = 1.0  # 20 pixels, 8 inside the box -> union 32
    assert iou(cam, region) == pytest.approx(8 / 32)
    assert iou(np.zeros(SHAPE), region) == pytest.approx(area_fraction(region))  # flat: whole image marked


def test_energy_fraction_known_values():
    region = box_region(SHAPE, [BOX])
    cam = np.zeros(SHAPE)
    cam[3, 6] = 3.0
    cam[0, 0] = 1.0
    assert energy_fraction(cam, region) == pytest.approx(0.75)
    assert energy_fraction(cam + 5.0, region) == pytest.approx(0.75)  # measured above the map's minimum
    assert energy_fraction(np.full(SHAPE, 2.0), region) == pytest.approx(0.1)  # uniform = area fraction


def test_score_map_bundles_scores_and_chance():
    region = box_region(SHAPE, [BOX])
    cam = np.zeros(SHAPE)
    cam[2:6, 5:10] = 1.0
    score = score_map(cam, region)
    assert (score.pointing_game, score.iou, score.energy_fraction, score.area_fraction, score.flat) == (1.0, 1.0, 1.0, 0.1, False)
    flat = score_map(np.zeros(SHAPE), region)
    assert flat.flat and flat.pointing_game == flat.iou == flat.energy_fraction == pytest.approx(0.1)
    with pytest.raises(ValueError):
        score_map(cam, np.zeros(SHAPE, dtype=bool))
    with pytest.raises(ValueError):
        score_map(cam[:, :5], region)


def test_label_region_prefers_boxes_then_masks(tmp_path):
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[0:2, 0:3] = 255
    mask_path = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_path)
    region, source = label_region("nodule", SHAPE, [BOX], str(mask_path), ["nodule"])
    assert source == "box" and region.sum() == 20
    region, source = label_region("malignant", SHAPE, [], str(mask_path), ["malignant"])
    assert source == "mask" and region.sum() == 6
    # a label the image does not have (a false positive) gets no region from the image's mask
    assert label_region("benign", SHAPE, [], str(mask_path), ["malignant"]) == (None, None)
    assert label_region("normal", SHAPE, [], None, ["normal"]) == (None, None)
    # masks stored at another size are resized to the image
    small = tmp_path / "small.png"
    Image.fromarray(mask[::2, ::2]).save(small)
    region, _ = label_region("malignant", SHAPE, None, str(small), ["malignant"])
    assert region.shape == SHAPE and region[:2, :3].all()
    with pytest.raises(VlmprobeError, match="missing.png"):
        cam_scores.mask_region(tmp_path / "missing.png", SHAPE)


def test_summarise_uses_scored_maps_only():
    scores = pl.DataFrame(
        {
            "setting": ["ft", "ft", "ft", "zs"],
            "has_region": [True, True, False, True],
            "pointing_game": [1.0, 0.0, None, 0.5],
            "iou": [0.5, 0.1, None, 0.2],
            "energy_fraction": [0.6, 0.2, None, 0.1],
            "area_fraction": [0.1, 0.3, None, 0.1],
            "flat": [False, False, False, True],
        }
    )
    out = summarise(scores, ["setting"]).to_dicts()
    assert [row["setting"] for row in out] == ["ft", "zs"]
    ft = out[0]
    assert ft["n_maps"] == 2 and ft["pointing_game"] == 0.5 and ft["chance"] == pytest.approx(0.2)
    assert ft["pointing_game_lift"] == pytest.approx(0.3) and ft["pointing_game_se"] == pytest.approx(np.sqrt(0.25 / 2))
    assert out[1]["flat_fraction"] == 1.0
