"""Scoring functions on hand-made maps with known answers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from PIL import Image

from vlmprobe.errors import VlmprobeError
from vlmprobe.heatmaps import scores as map_scores
from vlmprobe.heatmaps import summary as heatmap_summary_module
from vlmprobe.heatmaps.scores import (
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


def test_iou_chance_is_the_mean_over_permuted_maps_and_all_ones_is_an_upper_bound():
    import itertools

    from vlmprobe.heatmaps.scores import iou, permuted_iou_chance

    cam = np.array([[0.0, 0.9, 1.0], [0.2, 0.0, 0.1]])  # two salient pixels at the default threshold
    region = np.array([[True, True, False], [False, False, False]])
    values = cam.ravel()
    permuted = [iou(np.array(order).reshape(cam.shape), region) for order in itertools.permutations(values)]
    score = score_map(cam, region)
    assert score.iou_chance == pytest.approx(np.mean(permuted))  # exact: every placement of the values
    assert score.iou_chance == pytest.approx(permuted_iou_chance(6, 2, 2))
    assert score.iou_chance < score.area_fraction == pytest.approx(iou(np.ones(cam.shape), region))
    subsets = [set(c) for c in itertools.combinations(range(10), 4)]
    direct = np.mean([len(c & {0, 1, 2}) / len(c | {0, 1, 2}) for c in subsets])
    assert permuted_iou_chance(10, 4, 3) == pytest.approx(direct)
    for s in range(1, 10):  # the all-ones map (s = N) has the largest expected IoU
        assert permuted_iou_chance(10, s, 3) <= permuted_iou_chance(10, 10, 3) == pytest.approx(0.3)


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
        map_scores.mask_region(tmp_path / "missing.png", SHAPE)


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


def _scores_file(path, setting, hits, model="m1"):
    from vlmprobe.heatmaps.scores import SCORE_SCHEMA

    rows = [
        {
            "dataset": "d", "model": model, "setting": setting, "method": "gradcam", "sample_id": f"s{i}",
            "label": "nodule" if i % 2 else "effusion", "target_kind": "true", "score": 1.0, "map_index": i,
            "has_region": True, "region_source": "box", "area_fraction": 0.1, "pointing_game": hit,
            "iou": 0.2, "energy_fraction": 0.3, "flat": False,
        }
        for i, hit in enumerate(hits)
    ]
    rows.append({**rows[0], "sample_id": "fp", "target_kind": "false_positive", "has_region": False, "region_source": None,
                 "area_fraction": None, "pointing_game": None, "iou": None, "energy_fraction": None})  # fmt: skip
    pl.DataFrame(rows, schema=SCORE_SCHEMA).write_parquet(path)
    return path


def test_heatmap_summary_table_markdown_and_figure(tmp_path):
    paths = [
        _scores_file(tmp_path / "ft.parquet", "ft", [1.0, 1.0, 0.0, 1.0]),
        _scores_file(tmp_path / "zs.parquet", "zs", [0.0, 0.0, 0.0, 1.0]),
    ]
    summary = heatmap_summary_module.write_heatmap_summary(paths, tmp_path / "s.parquet", tmp_path / "s.md", tmp_path / "s.png")
    overall = summary.filter(pl.col("label") == heatmap_summary_module.ALL_LABELS)
    assert overall["setting"].to_list() == ["zs", "ft"]  # the study's order, not alphabetical
    assert overall["pointing_game"].to_list() == [0.25, 0.75] and overall["n_maps"].to_list() == [4, 4]
    per_label = summary.filter((pl.col("setting") == "ft") & (pl.col("label") == "effusion"))
    assert per_label["pointing_game"].item() == 0.5  # s0 hit, s2 miss
    markdown = (tmp_path / "s.md").read_text()
    assert "| m1 | 25% ± 22 (10%), n = 4 | 75% ± 22 (10%), n = 4 |" in markdown
    assert "### IoU (chance; all-ones map)" in markdown and "| m1 | 0.20 (—; 0.10) |" in markdown  # fixture rows have no iou_chance
    assert (tmp_path / "s.png").stat().st_size > 1000
    empty = heatmap_summary_module.write_heatmap_summary([], tmp_path / "e.parquet", tmp_path / "e.md", tmp_path / "e.png")
    assert empty.is_empty() and "No annotated maps" in (tmp_path / "e.md").read_text()


def test_metric_heatmap_numbers_blanks_and_errors():
    from vlmprobe.figures import metric_heatmap

    table = pl.DataFrame({"model": ["a", "a", "b", "c"], "dataset": ["x", "y", "x", "y"], "acc": [0.9, 0.55, float("nan"), 0.05]})
    figure = metric_heatmap(table, row="model", column="dataset", value="acc", title="t")
    ax = figure.axes[0]
    cells = sorted(text.get_text() for text in ax.texts)
    assert cells == sorted(["90%", "55%", "—", "—", "—", "5.0%"])  # b/x is NaN, b/y and c/x are missing
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert len(figure.axes) == 2  # the colour bar
    figure = metric_heatmap(table.to_pandas(), row="dataset", column="model", value="acc", title="t", fmt="{:.2f}")
    assert "0.90" in [text.get_text() for text in figure.axes[0].texts]
    with pytest.raises(ValueError, match="aggregate"):
        metric_heatmap(pl.concat([table, table]), row="model", column="dataset", value="acc", title="t")
    with pytest.raises(KeyError, match="f1"):
        metric_heatmap(table, row="model", column="dataset", value="f1", title="t")
