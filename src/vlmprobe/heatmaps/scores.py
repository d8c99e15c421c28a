"""Scoring attribution maps against annotated regions: pointing game, IoU, energy inside the region.

A *map* is a 2-D float array at the original image's size, larger = more attribution (Grad-CAM maps
are non-negative and min-max scaled to [0, 1], but nothing here assumes that beyond "larger is
more"). A *region* is a boolean array of the same shape: the union of a label's boxes
(``x1``/``y1`` exclusive, pixel coordinates of the original image) or a mask image.

The three scores, and the chance level reported beside them
-----------------------------------------------------------
=================  ================================================  ========================================
score              definition                                        chance (a map that knows nothing)
=================  ================================================  ========================================
pointing game      1 if the map's maximum lies inside the region     the region's area fraction: a uniformly
                   (Zhang et al. 2016, no tolerance margin).         random point hits it that often.
                   Ties at the maximum are split: the score is the
                   fraction of maximal pixels inside the region, so
                   a constant map scores exactly the area fraction.
IoU                intersection over union of the thresholded map    ``iou_chance``: the expected IoU of the
                   (pixels >= ``threshold`` x max, default 0.5,      same map with its pixels permuted at
                   on the map's own min-max range) with the region.  random over the image (same values, so
                   ``top_fraction`` instead keeps the top k % of     the same number s of salient pixels,
                   pixels.                                           placed anywhere): E[I / (s + r - I)] with
                                                                     I ~ Hypergeometric(N, r, s), exact.
energy fraction    sum of the map inside the region / sum of the     the area fraction: a uniform map puts
                   map (after subtracting the map's minimum).        that share of its energy in the region.
=================  ================================================  ========================================

For IoU the area fraction is *not* chance: it is the IoU of an all-ones map (``iou_all_ones``), the
largest IoU any map that ignores the image can expect (a random salient set of s of N pixels has
expected IoU ~ s r / N / (s + r - s r / N), increasing in s, reaching r / N at s = N). A map whose
salient area is small has a chance level far below it, so "IoU above the area fraction" understated
what a localising map achieves and "below" did not mean "worse than chance"; both columns are reported.

A flat map (max == min, e.g. Grad-CAM with no positive evidence) carries no location at all: it is
treated as uniform and scores exactly chance on all three (flagged ``flat``), rather than as a
miss or as missing, so that dropping such maps cannot flatter a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError

DEFAULT_THRESHOLD = 0.5
THRESHOLD_RULES = ("relative_max", "top_fraction")


@dataclass(frozen=True)
class MapScore:
    pointing_game: float
    iou: float
    energy_fraction: float
    area_fraction: float
    """The chance level of the pointing game and the energy fraction; for IoU, the all-ones map's IoU (an upper bound)."""
    flat: bool
    iou_chance: float = float("nan")
    """The expected IoU of this map with its pixels randomly permuted (see the module docstring)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def box_region(shape: tuple[int, int], boxes: Iterable[Mapping[str, Any]]) -> np.ndarray:
    """Union of boxes ``{x0, y0, x1, y1}`` (x1/y1 exclusive) as a boolean (H, W) array, clipped to the image."""
    height, width = shape
    region = np.zeros((height, width), dtype=bool)
    for box in boxes:
        x0, y0 = max(int(box["x0"]), 0), max(int(box["y0"]), 0)
        x1, y1 = min(int(box["x1"]), width), min(int(box["y1"]), height)
        if x1 > x0 and y1 > y0:
            region[y0:y1, x0:x1] = True
    return region


def mask_region(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """A mask image (any non-zero pixel marks the region) as a boolean array of ``shape`` (H, W).

    A mask stored at another size than its image is resized with nearest-neighbour sampling.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            mask = image.convert("L")
            if mask.size != (shape[1], shape[0]):
                mask = mask.resize((shape[1], shape[0]), Image.Resampling.NEAREST)
            return np.asarray(mask) > 0
    except (OSError, ValueError) as error:
        raise VlmprobeError(
            f"Annotation mask {str(path)!r} cannot be read ({type(error).__name__}: {error}).",
            "restore the mask file or clear the row's annotation_path in the manifest source.",
        ) from error


def _check(cam: np.ndarray, region: np.ndarray) -> None:
    if cam.ndim != 2 or cam.shape != region.shape:
        raise ValueError(f"map of shape {cam.shape} and region of shape {region.shape} must be the same 2-D shape")
    if not np.isfinite(cam).all():
        raise ValueError("map has non-finite values")


def _is_flat(cam: np.ndarray) -> bool:
    return bool(cam.max() <= cam.min())


def area_fraction(region: np.ndarray) -> float:
    return float(region.mean())


def pointing_game(cam: np.ndarray, region: np.ndarray) -> float:
    """1.0 if the map's maximum is inside ``region``, else 0.0; ties split as the fraction of maxima inside."""
    _check(cam, region)
    maxima = cam == cam.max()
    return float(region[maxima].mean())


def threshold_map(cam: np.ndarray, threshold: float = DEFAULT_THRESHOLD, rule: str = "relative_max") -> np.ndarray:
    """The map's salient pixels as a boolean array.

    ``relative_max``: pixels >= min + ``threshold`` x (max - min) (``threshold`` in (0, 1]);
    ``top_fraction``: the ``threshold`` fraction of pixels with the largest values (ties included).
    A flat map marks every pixel.
    """
    if rule not in THRESHOLD_RULES:
        raise VlmprobeError(f"Unknown threshold rule {rule!r}.", f"use one of {THRESHOLD_RULES}.")
    if not 0 < threshold <= 1:
        raise VlmprobeError(f"Threshold {threshold!r} is outside (0, 1].", "give a fraction such as 0.5.")
    low, high = float(cam.min()), float(cam.max())
    if high <= low:
        return np.ones(cam.shape, dtype=bool)
    if rule == "relative_max":
        return cam >= low + threshold * (high - low)
    count = max(1, int(round(threshold * cam.size)))
    cutoff = np.partition(cam.ravel(), cam.size - count)[cam.size - count]
    return cam >= cutoff


def iou(cam: np.ndarray, region: np.ndarray, threshold: float = DEFAULT_THRESHOLD, rule: str = "relative_max") -> float:
    """Intersection over union of the thresholded map with ``region`` (0 when both are empty)."""
    _check(cam, region)
    salient = threshold_map(cam, threshold, rule)
    union = np.logical_or(salient, region).sum()
    if union == 0:
        return 0.0
    return float(np.logical_and(salient, region).sum() / union)


def permuted_iou_chance(n_pixels: int, n_salient: int, n_region: int) -> float:
    """E[I / (s + r - I)], I ~ Hypergeometric(N, r, s): the IoU expected of ``s`` salient pixels placed at random."""
    from scipy.stats import hypergeom

    N, s, r = int(n_pixels), int(n_salient), int(n_region)
    if s == 0 or r == 0:
        return 0.0
    overlap = np.arange(max(0, s + r - N), min(s, r) + 1)
    probability = hypergeom(N, r, s).pmf(overlap)
    return float(np.sum(probability * overlap / (s + r - overlap)))


def energy_fraction(cam: np.ndarray, region: np.ndarray) -> float:
    """Share of the map's mass (above its minimum) that lies inside ``region``; a flat map counts as uniform."""
    _check(cam, region)
    mass = cam.astype(np.float64) - float(cam.min())
    total = mass.sum()
    if total <= 0:
        return area_fraction(region)
    return float(mass[region].sum() / total)


def score_map(cam: np.ndarray, region: np.ndarray, threshold: float = DEFAULT_THRESHOLD, rule: str = "relative_max") -> MapScore:
    """All three scores of one map against one region, with the region's area fraction as chance."""
    _check(cam, region)
    if not region.any():
        raise ValueError("the region is empty: nothing to score against")
    return MapScore(
        pointing_game=pointing_game(cam, region),
        iou=iou(cam, region, threshold, rule),
        energy_fraction=energy_fraction(cam, region),
        area_fraction=area_fraction(region),
        flat=_is_flat(cam),
        iou_chance=permuted_iou_chance(cam.size, int(threshold_map(cam, threshold, rule).sum()), int(region.sum())),
    )


def label_region(
    label: str,
    shape: tuple[int, int],
    boxes: Iterable[Mapping[str, Any]] | None,
    annotation_path: str | None,
    true_labels: Iterable[str],
) -> tuple[np.ndarray | None, str | None]:
    """The region a map for ``label`` is scored against, and where it came from ('box' / 'mask').

    Boxes of that label win; otherwise a mask (which marks the image's finding without naming it)
    applies to the image's true labels. None when the image says nothing about where ``label`` is
    (a false-positive label, 'normal', an image without annotations, or an empty mask).
    """
    own = [box for box in (boxes or []) if box.get("label") == label]
    if own:
        region = box_region(shape, own)
        if region.any():
            return region, "box"
    if annotation_path and label in set(true_labels):
        region = mask_region(annotation_path, shape)
        if region.any():
            return region, "mask"
    return None, None


def summarise(scores: Any, by: list[str]) -> Any:
    """Mean scores per group of a scores table (polars): maps with a region only.

    Columns: ``by`` + n_maps, pointing_game, iou, energy_fraction, chance (mean area fraction: the pointing
    game's and energy's chance level), iou_chance (mean permuted-map IoU), iou_all_ones (mean area fraction:
    the all-ones map's IoU, an upper bound for uninformative maps, not chance), pointing_game_lift
    (pointing_game - chance) and the pointing game's binomial standard error.
    """
    import polars as pl

    scored = scores.filter(pl.col("has_region"))
    if "iou_chance" not in scored.columns:  # score files written before the permuted-map chance existed
        scored = scored.with_columns(pl.lit(None, pl.Float64).alias("iou_chance"))
    return (
        scored.group_by(by, maintain_order=True)
        .agg(
            pl.len().alias("n_maps"),
            pl.col("pointing_game").mean(),
            pl.col("iou").mean(),
            pl.col("energy_fraction").mean(),
            pl.col("area_fraction").mean().alias("chance"),
            pl.col("iou_chance").mean(),
            pl.col("area_fraction").mean().alias("iou_all_ones"),
            pl.col("flat").mean().alias("flat_fraction"),
        )
        .with_columns(
            (pl.col("pointing_game") - pl.col("chance")).alias("pointing_game_lift"),
            (pl.col("pointing_game") * (1 - pl.col("pointing_game")) / pl.col("n_maps")).sqrt().alias("pointing_game_se"),
        )
        .sort(by)
    )


# ----------------------------------------------------------------------------------------------------
# The summary across datasets, models and settings
# ----------------------------------------------------------------------------------------------------


def _score_schema() -> dict[str, Any]:
    import polars as pl

    return {
        "dataset": pl.String, "model": pl.String, "setting": pl.String, "method": pl.String,
        "sample_id": pl.String, "label": pl.String, "target_kind": pl.String, "score": pl.Float64,
        "map_index": pl.Int64, "has_region": pl.Boolean, "region_source": pl.String,
        "area_fraction": pl.Float64, "pointing_game": pl.Float64, "iou": pl.Float64,
        "energy_fraction": pl.Float64, "flat": pl.Boolean, "iou_chance": pl.Float64,
    }


SCORE_SCHEMA = _score_schema()
"""Columns of a ``{setting}_scores.parquet``: one row per map; ``score`` is the model's output for the
label (zs: cosine similarity, lp/ft: logit); the four score columns are null without a region."""
