"""Turning a case into 8-bit pixels and one bounding box per finding.

Every finding is a local change of the density map with compact support; the global acquisition steps after
it are the same with or without the finding, so rendering a subset of the findings changes pixels only near
the ones left out. The burned-in shortcut marker is drawn onto the finished image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from vlmprobe.datasets.records import Box
from vlmprobe.datasets.synthetic_cxr.geometry import (
    enlarged_heart,
    heart_mask,
    lung_margin,
    segment_distance,
    smoothstep,
    soft_inside,
)
from vlmprobe.datasets.synthetic_cxr.specs import FINDINGS, SIDES, Anatomy, Case, Finding, Lung, Rendered

# A finding's mask counts as "changed" above this value; its box is the bounding box of those pixels.
BOX_MASK_THRESHOLD = 0.05


@dataclass
class _Scene:
    """Per-image arrays shared by the anatomy and the findings."""

    size: int
    u: np.ndarray  # anatomy coordinates of each pixel centre
    v: np.ndarray
    px: float  # one pixel in anatomy units
    lungs: dict[int, np.ndarray]  # side -> soft lung mask
    markings: np.ndarray  # >= 0 speckle of lung vessels (before the lung mask)


def _make_scene(case: Case) -> _Scene:
    a, size = case.anatomy, case.image_size
    # float32 halves the cost of every per-pixel operation; the precision is far below one grey level
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = np.meshgrid(centres, centres)  # image coordinates in [0, 1]
    # image = centre + shift + scale * R(angle) (anatomy - centre); invert it per pixel
    dx, dy = x - 0.5 - a.shift_u, y - 0.5 - a.shift_v
    c, s = math.cos(a.angle), math.sin(a.angle)
    u = (0.5 + (c * dx + s * dy) / a.scale).astype(np.float32)
    v = (0.5 + (-s * dx + c * dy) / a.scale).astype(np.float32)
    px = 1.0 / (size * a.scale)
    lungs = {lung.side: soft_inside(lung_margin(u, v, lung, a), 1.5 * px) for lung in a.lungs}
    noise = np.random.default_rng(a.markings_seed).standard_normal((size, size), dtype=np.float32)
    speckle = ndimage.gaussian_filter(noise, sigma=0.9 * size / 128, mode="reflect")
    speckle /= speckle.std() + 1e-12
    # vessels are densest at the hila and fade towards the periphery
    m = np.abs(u - 0.5)
    hilar = np.clip(1.15 - 2.2 * (m - a.mediastinum), 0.35, 1.0) * np.clip(1.0 - 2.5 * np.abs(v - 0.45), 0.4, 1.0)
    markings = np.clip(speckle - 0.3, 0.0, 3.0) * hilar
    return _Scene(size=size, u=u, v=v, px=px, lungs=lungs, markings=markings)


def _nearest_band(phase: np.ndarray, count: int) -> np.ndarray:
    """Distance (in units of the band spacing) to the nearest of ``count`` bands at phases 0..count-1."""
    return phase - np.clip(np.round(phase), 0, count - 1)


def _body_and_bones(scene: _Scene, a: Anatomy, aerated: np.ndarray) -> np.ndarray:
    """Soft tissue and bones; ribs show mostly where ``aerated`` lung lies behind them."""
    u, v, px = scene.u, scene.v, scene.px
    m = np.abs(u - 0.5)
    # neck widening into the shoulders, then the chest wall
    half_width = 0.13 + (a.body_half_width - 0.13) * np.sqrt(smoothstep((v - 0.035) / 0.15))
    body = soft_inside(half_width - m, 2.0 * px)
    thickness = np.sqrt(np.clip(1.0 - (m / half_width) ** 2, 0.0, 1.0))  # thinner tissue at the edges
    density = 0.04 + body * a.soft_tissue * (0.7 + 0.3 * thickness)
    # spine with faint vertebral bodies, trachea as a dark column in the upper mediastinum
    spine = soft_inside(0.032 - m, 2.0 * px) * (0.85 + 0.15 * np.cos(2 * math.pi * v / 0.065))
    density += a.spine_amp * spine * smoothstep((v - 0.04) / 0.1)
    trachea = soft_inside(0.016 - m, 1.5 * px) * soft_inside(0.34 - v, 0.04)
    density -= 0.09 * trachea
    # clavicles: bright bars from the sternal notch rising laterally
    for side in SIDES:
        p0 = (0.5 + side * 0.045, a.clavicle_v + 0.02)
        p1 = (0.5 + side * 0.31, a.clavicle_v - 0.065)
        clavicle = soft_inside(0.011 - segment_distance(u, v, p0, p1), 2.0 * px)
        density += a.clavicle_amp * clavicle
    # ribs: posterior arcs (highest a third of the way out, dropping laterally), fainter anterior ribs
    # sloping down towards the sternum; seen mostly against the dark lungs
    chest = soft_inside(a.body_half_width - 0.025 - m, 3.0 * px) * soft_inside(m - 0.03, 2.0 * px)
    posterior = _nearest_band((v - a.rib_top - 2.6 * (m - 0.14) ** 2) / a.rib_spacing, 10) * a.rib_spacing
    anterior = _nearest_band((v - a.rib_top - 0.05 - 0.4 * (0.42 - m)) / (1.05 * a.rib_spacing), 9)
    anterior *= 1.05 * a.rib_spacing
    ribs = np.exp(-((posterior / a.rib_thickness) ** 2))
    ribs += 0.4 * np.exp(-((anterior / (0.8 * a.rib_thickness)) ** 2)) * soft_inside(m - 0.13, 0.03)
    ribs *= chest * soft_inside(0.86 - v, 0.05)
    density += a.rib_amp * ribs * (0.15 + 0.85 * aerated)
    # gas bubble of the stomach under the left hemidiaphragm (image right): a dark distractor, no finding
    if a.gastric_bubble > 0:
        left = a.lungs[1]
        bubble = np.hypot((u - 0.5 - 0.6 * left.width) / 0.05, (v - left.base - 0.045) / 0.03)
        density -= a.gastric_bubble * soft_inside((1.0 - bubble) * 0.03, 3.0 * px)
    return density


def _mediastinal_shadow(scene: _Scene, a: Anatomy) -> np.ndarray:
    """Vascular pedicle widening down to the heart, and the aortic knob: blends the heart into the mediastinum."""
    u, v, px = scene.u, scene.v, scene.px
    heart_top = a.heart.cv - a.heart.half_height
    widening = smoothstep((v - (heart_top - 0.17)) / 0.17)
    pedicle_width = a.mediastinum + 0.01 + 0.045 * widening
    pedicle = soft_inside(pedicle_width - np.abs(u - 0.5 - 0.015 * widening), 1.5 * px)
    pedicle *= soft_inside(a.heart.cv - v, 2 * px)
    knob = soft_inside(0.03 - np.hypot(u - 0.5 - a.mediastinum - 0.025, v - heart_top + 0.11), 1.5 * px)
    return np.maximum(pedicle, knob)


def _draw_nodule(scene: _Scene, p: Mapping[str, float]) -> np.ndarray:
    """A dome-shaped blob with a sharp, slightly lobulated margin."""
    du, dv = scene.u - p["cu"], scene.v - p["cv"]
    r = np.hypot(du, dv)
    lobes = 1.0 + p["lobe_amp"] * np.cos(3.0 * np.arctan2(dv, du) + p["lobe_phase"])
    level = np.clip(1.0 - (r / (p["radius"] * lobes)) ** 2, 0.0, 1.0)
    return np.sqrt(level) * soft_inside(p["radius"] * lobes - r, 1.2 * scene.px)


def _draw_opacity(scene: _Scene, p: Mapping[str, float], lung: np.ndarray) -> np.ndarray:
    """A mottled patch with a ragged, fading border, confined to the lung."""
    du, dv = scene.u - p["cu"], scene.v - p["cv"]
    c, s = math.cos(p["angle"]), math.sin(p["angle"])
    a_ = (c * du + s * dv) / (p["radius"] * p["aspect"] ** 0.5)
    b_ = (-s * du + c * dv) / (p["radius"] / p["aspect"] ** 0.5)
    noise = np.random.default_rng(int(p["texture_seed"])).standard_normal((scene.size, scene.size), dtype=np.float32)
    blotch = ndimage.gaussian_filter(noise, sigma=1.6 * scene.size / 128, mode="reflect")
    blotch /= blotch.std() + 1e-12
    # ragged edge: the noise moves the border in and out; mottled inside
    r = np.hypot(a_, b_) * (1.0 + 0.18 * np.clip(blotch, -2, 2))
    envelope = smoothstep((1.0 - r) / 0.45)
    texture = 0.45 + 0.55 * smoothstep(0.5 + 0.35 * blotch)
    return envelope * texture * lung


def _effusion_mask(scene: _Scene, a: Anatomy, p: Mapping[str, float], lung_spec: Lung, lung: np.ndarray):
    """Fluid filling the lung base up to a meniscus; it blunts the costophrenic angle."""
    m = lung_spec.side * (scene.u - 0.5)
    lateral = np.clip((m - a.mediastinum) / lung_spec.width, 0.0, 1.0)
    level = lung_spec.base - p["depth"] - p["meniscus"] * lateral**2  # fluid climbs the lateral wall
    return soft_inside(scene.v - level, 2.0 * scene.px) * lung


def _pneumothorax_masks(scene: _Scene, a: Anatomy, p: Mapping[str, float], lung_spec: Lung, lung: np.ndarray):
    """(air, pleural line): the lung shrunk towards its lower hilum leaves an air rim at apex and side."""
    anchor_u = 0.5 + lung_spec.side * (a.mediastinum + 0.15 * lung_spec.width)
    anchor_v = lung_spec.base - 0.12
    k = p["collapse"]
    cu = anchor_u + (scene.u - anchor_u) / k
    cv = anchor_v + (scene.v - anchor_v) / k
    collapsed_margin = lung_margin(cu, cv, lung_spec, a) * k
    upper = soft_inside(anchor_v - 0.06 - scene.v, 3.0 * scene.px)
    air = lung * (1.0 - soft_inside(collapsed_margin, 1.5 * scene.px)) * upper
    line_halfwidth = 0.6 * scene.px
    line = lung * upper * soft_inside(1.3 * line_halfwidth - np.abs(collapsed_margin), line_halfwidth)
    return air, line


def render_case(case: Case, findings: Sequence[Finding] | None = None) -> Rendered:
    """Render ``case`` with ``findings`` (default: the case's own) and return the image and their boxes.

    Rendering with a subset of the findings gives the same image except near the findings left out.
    """
    findings = case.findings if findings is None else tuple(findings)
    labels = [finding.label for finding in findings]
    if len(set(labels)) != len(labels) or not set(labels) <= set(FINDINGS):
        raise ValueError(f"findings must be distinct members of FINDINGS, got {labels}")
    a = case.anatomy
    scene = _make_scene(case)
    px = scene.px
    by_label = {finding.label: finding for finding in findings}
    masks: dict[str, np.ndarray] = {}

    heart = a.heart
    if "cardiomegaly" in by_label:
        heart = enlarged_heart(a.heart, by_label["cardiomegaly"].params)
    heart_shadow = heart_mask(scene.u, scene.v, heart, 1.5 * px)
    pedicle = _mediastinal_shadow(scene, a)
    # soft tissue in front of the lungs: the heart, the mediastinum above it
    mediastinal = np.maximum(heart_shadow, pedicle)
    lung_any = np.maximum(scene.lungs[-1], scene.lungs[1])
    if "cardiomegaly" in by_label:
        # the box is the cardiac silhouette: the heart where it shows against the lungs, not its upper
        # part hidden in the mediastinum nor its floor hidden in the diaphragm
        masks["cardiomegaly"] = heart_shadow * lung_any * (1.0 - pedicle)

    density = _body_and_bones(scene, a, lung_any * (1.0 - mediastinal))
    # lungs look a little less black at the bases and hila, where more tissue overlies them
    lung_darkness = a.lung_depth * (1.0 - 0.18 * smoothstep((scene.v - 0.3) / 0.5))
    for lung_spec in a.lungs:
        side = lung_spec.side
        lung = scene.lungs[side]
        aerated = lung * (1.0 - mediastinal)
        filled = np.zeros_like(lung)  # how much of the lung's darkness fluid takes away
        no_markings = np.zeros_like(lung)
        effusion = by_label.get("effusion")
        if effusion is not None and effusion.side == side:
            fluid = _effusion_mask(scene, a, effusion.params, lung_spec, lung)
            masks["effusion"] = fluid
            filled = effusion.params["fill"] * fluid
            no_markings = fluid
        density -= lung_darkness * aerated * (1.0 - filled)
        pneumothorax = by_label.get("pneumothorax")
        if pneumothorax is not None and pneumothorax.side == side:
            air, line = _pneumothorax_masks(scene, a, pneumothorax.params, lung_spec, lung)
            masks["pneumothorax"] = np.maximum(air, line)
            no_markings = np.maximum(no_markings, air)  # the collapsed lung is away from the chest wall
            density -= pneumothorax.params["darken"] * air * (1.0 - mediastinal)
            density += pneumothorax.params["line_amp"] * line
        density += a.marking_amp * scene.markings * aerated * (1.0 - no_markings)
    if "nodule" in by_label:
        nodule = by_label["nodule"]
        masks["nodule"] = _draw_nodule(scene, nodule.params)
        density += nodule.params["amp"] * masks["nodule"]
    if "opacity" in by_label:
        opacity = by_label["opacity"]
        masks["opacity"] = _draw_opacity(scene, opacity.params, scene.lungs[opacity.side])
        density += opacity.params["amp"] * masks["opacity"]

    # acquisition: global contrast and exposure, gamma, a little blur and quantum noise
    image = np.clip(0.5 + a.contrast * (density - 0.5) + a.brightness, 0.0, 1.0) ** a.gamma
    image = ndimage.gaussian_filter(image, sigma=a.blur_px * case.image_size / 128, mode="nearest")
    image += a.noise_std * np.random.default_rng(a.noise_seed).standard_normal(image.shape, dtype=np.float32)
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    if case.marker:
        burn_marker(pixels)

    boxes = tuple(_box_of(label, masks[label]) for label in FINDINGS if label in masks)
    return Rendered(image=pixels, boxes=boxes)


# A 5 x 7 bitmap of "RT" (a burned-in laterality stamp); 1 = bright.
_MARKER_GLYPHS = (
    "11110 11111",
    "10001 00100",
    "10001 00100",
    "11110 00100",
    "10100 00100",
    "10010 00100",
    "10001 00100",
)


def marker_region(image_size: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` (exclusive) of the marker's pixels in an image of ``image_size``."""
    scale = max(1, image_size // 64)
    margin = max(1, image_size // 32)
    return margin, margin, margin + scale * len(_MARKER_GLYPHS[0]), margin + scale * len(_MARKER_GLYPHS)


def burn_marker(pixels: np.ndarray) -> None:
    """Burn the marker into the top-left corner of an 8-bit image, in place (bright text, value 250)."""
    x0, y0, x1, y1 = marker_region(pixels.shape[0])
    scale = max(1, pixels.shape[0] // 64)
    glyph = np.array([[ch == "1" for ch in row] for row in _MARKER_GLYPHS], dtype=bool)
    patch = np.kron(glyph, np.ones((scale, scale), dtype=bool))
    region = pixels[y0:y1, x0:x1]
    region[patch] = 250


def _box_of(label: str, mask: np.ndarray) -> Box:
    rows = np.flatnonzero((mask > BOX_MASK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((mask > BOX_MASK_THRESHOLD).any(axis=0))
    if rows.size == 0:  # pragma: no cover - sampling keeps every finding inside a lung/the chest
        raise AssertionError(f"{label} left no mark on the image")
    return Box(label=label, x0=int(cols[0]), y0=int(rows[0]), x1=int(cols[-1]) + 1, y1=int(rows[-1]) + 1)
