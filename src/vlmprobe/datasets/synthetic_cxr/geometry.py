"""Shapes of the synthetic chest (soft masks, the lung outline, the heart ellipse), vectorised over anatomy coordinates.

Shared by sampling (to place findings inside a lung) and rendering.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from vlmprobe.datasets.synthetic_cxr.specs import Anatomy, Heart, Lung


def smoothstep(x: np.ndarray) -> np.ndarray:
    # maximum/minimum rather than np.clip: this runs ~25 times per image and np.clip's overhead dominated
    x = np.maximum(x, 0.0)
    np.minimum(x, 1.0, out=x)
    return x * x * (3.0 - 2.0 * x)


def soft_inside(margin: np.ndarray, edge: float) -> np.ndarray:
    """0 outside, 1 inside, a linear-ish ramp ``edge`` wide centred on the border; compact support."""
    return smoothstep(margin / edge + 0.5)


def lung_margin(u: np.ndarray, v: np.ndarray, lung: Lung, anatomy: Anatomy) -> np.ndarray:
    """Signed distance-like margin (anatomy units, > 0 inside) of the lung: a rounded apex, a lateral wall
    that becomes vertical at the base, a domed diaphragm that meets the wall at a sharp angle."""
    m = lung.side * (u - 0.5)
    s = np.clip((v - lung.top) / (lung.base - lung.top), 0.0, 1.0)
    apex = anatomy.mediastinum + 0.35 * lung.width
    medial = anatomy.mediastinum + (apex - anatomy.mediastinum) * (1.0 - s) ** 2
    lateral = apex + 0.65 * lung.width * np.sqrt(1.0 - (1.0 - s) ** 2)
    dome_centre = anatomy.mediastinum + 0.45 * lung.width
    dome = np.clip(1.0 - ((m - dome_centre) / (0.62 * lung.width)) ** 2, 0.0, 1.0)
    diaphragm = lung.base + 0.01 - lung.dome * dome
    return np.minimum.reduce([m - medial, lateral - m, diaphragm - v, v - lung.top])


def heart_level(u: np.ndarray, v: np.ndarray, heart: Heart) -> np.ndarray:
    """Ellipse level of the heart (< 1 inside), before the flat floor is applied."""
    du, dv = u - heart.cu, v - heart.cv
    c, s = math.cos(heart.angle), math.sin(heart.angle)
    a = (c * du + s * dv) / heart.half_width
    b = (-s * du + c * dv) / heart.half_height
    return np.sqrt(a * a + b * b)


def heart_mask(u: np.ndarray, v: np.ndarray, heart: Heart, edge: float) -> np.ndarray:
    level = heart_level(u, v, heart)
    inside = soft_inside((1.0 - level) * heart.half_height, edge)
    return inside * soft_inside(heart.floor - v, edge)


def enlarged_heart(heart: Heart, params: Mapping[str, float]) -> Heart:
    return replace(
        heart,
        cu=heart.cu + params["shift_u"],
        cv=heart.cv + params["shift_v"],
        half_width=heart.half_width * params["grow_w"],
        half_height=heart.half_height * params["grow_h"],
    )


def segment_distance(u, v, p0: tuple[float, float], p1: tuple[float, float]) -> np.ndarray:
    du, dv = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((u - p0[0]) * du + (v - p0[1]) * dv) / (du * du + dv * dv), 0.0, 1.0)
    return np.hypot(u - p0[0] - t * du, v - p0[1] - t * dv)
