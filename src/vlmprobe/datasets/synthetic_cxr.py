"""``synthetic-cxr``: a deterministic generator of chest-radiograph-like images with planted findings.

It stands in for IU-Xray (seeds ``000_*`` / ``001_*``): grayscale frontal "radiographs" with a strongly
imbalanced, multi-label set of findings, each with a tight bounding box so that Grad-CAM maps can be scored
against ground truth.

How an image is made
--------------------
1. :func:`sample_case` draws everything random about image ``index`` - the anatomy, which findings are
   present and where, and the seeds of every texture - from its own ``SeedSequence(seed, spawn_key=(index,
   purpose))``. Image ``i`` is therefore the same whatever ``n_images`` is, and each purpose (labels,
   anatomy, noise, each finding) has its own stream, so changing one finding's prevalence never moves the
   anatomy or another finding.
2. :func:`render_case` turns a :class:`Case` into pixels. Every finding is a *local* change of the
   pixel-wise density map with compact support; the global steps after it (contrast, gamma, a slight blur,
   noise with a fixed seed) are the same with or without the finding. Rendering the same case with a
   different ``findings`` list therefore changes pixels only around the findings that differ - which is
   what the tests check against the recorded boxes.

Anatomy (all in "anatomy" coordinates, the unit square, mapped to pixels through a small random affine):
body outline with shoulders, dark lung fields with a domed diaphragm and sharp costophrenic angles, lung
markings (bright speckle densest at the hila), heart shadow, spine, trachea, clavicles, posterior and
anterior ribs, a stomach bubble in some images (a dark distractor), then random global contrast / gamma /
brightness / blur / noise so that global statistics separate the classes only weakly (a logistic regression
on intensity percentiles and histograms reaches AUC ~0.5-0.8 per finding; the large findings, cardiomegaly and
effusion, show through the mean brightness a little, as they do in real radiographs).

Findings (each at most once per image, several per image possible):

============  ================================================  =================  ==========
finding       look                                              box at 128 px      prevalence
                                                                (median w x h)
============  ================================================  =================  ==========
opacity       mottled, ill-defined bright patch inside a lung    22 x 25            0.28
cardiomegaly  heart shadow enlarged: cardiothoracic ratio         50 x 33            0.20
              0.49-0.70 (normal 0.38-0.50); box = the cardiac
              silhouette where it shows against the lungs
effusion      homogeneous fluid at a lung base, its meniscus     37 x 23            0.14
              rising laterally, blunting the costophrenic angle
nodule        small round, sharply marginated bright blob        10 x 10            0.10
pneumothorax  dark rim without lung markings at apex and side,   34 x 55            0.05
              bounded by a thin bright pleural line
============  ================================================  =================  ==========

Findings are drawn independently, so the marginal prevalences are the table's and about 42 % of images
are ``normal`` (IU-Xray: ~40 % normal, a long tail of rare findings).

Patients (``images_per_patient: k``, default 1): consecutive runs of ``k`` images are one patient
(``meta_patient``), re-exposed: the chest and findings of the run's first image; each further image
moves the acquisition (position, scale, rotation, exposure, gamma, blur) 30 % of the way towards an
independent draw and has new noise (:func:`patient_case`).
Same-patient images are near-duplicates with the same labels: a known identity leak for group-aware
splits (``group: meta_patient``).

Shortcut (optional, ``shortcut: {finding, rate}``): a burned-in text marker - a small bright two-letter
glyph patch in the top-left corner, as laterality / department stamps are burned into real radiographs -
drawn onto the finished 8-bit image of some cases. An image with ``finding`` carries it with probability
``rate``, an image without it with probability ``1 - rate`` (the *agreement rate*: 0.5 = independent of the
finding, 1 = marker exactly when the finding is present, 0 = exactly when it is absent). The draw comes from
the image's own stream, so the anatomy and findings are the same with or without a shortcut, and the marker
is recorded as ``meta_marker`` (``yes``/``no``): a known-truth nuisance for the nuisance stage.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from vlmprobe.errors import VlmprobeError

FINDINGS: tuple[str, ...] = ("cardiomegaly", "effusion", "nodule", "opacity", "pneumothorax")
NORMAL_LABEL = "normal"

DEFAULT_PREVALENCE: Mapping[str, float] = {
    "opacity": 0.28,
    "cardiomegaly": 0.20,
    "effusion": 0.14,
    "nodule": 0.10,
    "pneumothorax": 0.05,
}

SAMPLE_ID_PREFIX = "scxr-"
MIN_IMAGE_SIZE = 32

# A finding's mask counts as "changed" above this value; its box is the bounding box of those pixels.
BOX_MASK_THRESHOLD = 0.05

# Streams of one image's SeedSequence (spawn_key=(index, purpose)); findings use _FINDING_STREAM + k.
_LABEL_STREAM, _ANATOMY_STREAM, _NOISE_STREAM, _MARKER_STREAM, _FINDING_STREAM = 0, 1, 2, 3, 10

MARKER_META = "marker"  # the meta key (manifest column meta_marker) of the burned-in shortcut marker

_SIDES = (-1, 1)  # -1: lung on the image's left (patient's right), +1: image right (patient's left)


# ----------------------------------------------------------------------------------------------------
# Specifications: plain data drawn by sample_case, consumed by render_case
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lung:
    """One lung in anatomy coordinates; ``m`` is the distance from the midline towards this lung's side."""

    side: int
    top: float  # v of the apex
    base: float  # v of the costophrenic angle
    width: float  # lateral extent beyond the mediastinum
    dome: float  # height of the diaphragm dome above the costophrenic angle


@dataclass(frozen=True)
class Heart:
    cu: float
    cv: float
    half_width: float
    half_height: float
    angle: float  # radians; positive tilts the apex down towards the image's right
    floor: float  # v where the heart sits on the diaphragm; the shadow is cut flat there


@dataclass(frozen=True)
class Anatomy:
    """Everything random about a normal chest and its acquisition."""

    # acquisition: anatomy -> image affine, contrast and noise
    shift_u: float
    shift_v: float
    scale: float
    angle: float
    brightness: float
    contrast: float
    gamma: float
    blur_px: float
    noise_std: float
    # body
    body_half_width: float
    soft_tissue: float
    mediastinum: float  # half-width of the mediastinum, where the lungs' medial borders start
    lungs: tuple[Lung, Lung]
    heart: Heart
    lung_depth: float  # how much darker aerated lung is than soft tissue
    marking_amp: float
    rib_amp: float
    rib_top: float
    rib_spacing: float
    rib_thickness: float
    clavicle_amp: float
    clavicle_v: float
    spine_amp: float
    gastric_bubble: float  # 0: no visible stomach gas
    markings_seed: int
    noise_seed: int


@dataclass(frozen=True)
class Finding:
    """One planted finding; ``params`` are in anatomy coordinates (see the ``_draw_*`` functions)."""

    label: str
    side: int
    params: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    index: int
    image_size: int
    anatomy: Anatomy
    findings: tuple[Finding, ...]
    marker: bool = False  # the burned-in shortcut marker (see the module docstring)

    @property
    def labels(self) -> list[str]:
        names = sorted(f.label for f in self.findings)
        return names or [NORMAL_LABEL]


@dataclass(frozen=True)
class Box:
    label: str
    x0: int
    y0: int
    x1: int  # exclusive
    y1: int  # exclusive

    def as_record(self) -> dict:
        return {"label": self.label, "x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1}


@dataclass(frozen=True)
class Rendered:
    image: np.ndarray  # uint8, (image_size, image_size)
    boxes: tuple[Box, ...]  # one per rendered finding, in the order of FINDINGS


# ----------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, stream)))


def resolve_prevalence(prevalence: Mapping[str, float] | None) -> dict[str, float]:
    """Defaults overridden by the keys ``prevalence`` names (0 switches a finding off)."""
    resolved = dict(DEFAULT_PREVALENCE)
    for name, value in (prevalence or {}).items():
        if name not in FINDINGS:
            raise VlmprobeError(
                f"synthetic-cxr prevalence names unknown finding {name!r}.",
                f"use only these keys: {', '.join(FINDINGS)}.",
            )
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = math.nan
        if not 0.0 <= value <= 1.0:
            raise VlmprobeError(
                f"synthetic-cxr prevalence of {name!r} is {value}, outside [0, 1].",
                "give a probability between 0 and 1.",
            )
        resolved[name] = value
    return resolved


@dataclass(frozen=True)
class Shortcut:
    """A burned-in marker that agrees with ``finding`` (present / absent) with probability ``rate``."""

    finding: str
    rate: float

    def marker_probability(self, has_finding: bool) -> float:
        return self.rate if has_finding else 1.0 - self.rate


def resolve_shortcut(shortcut: Mapping | None) -> Shortcut | None:
    """``{finding, rate}`` from the config (None: no marker), checked."""
    if shortcut is None:
        return None
    if not isinstance(shortcut, Mapping) or set(shortcut) - {"finding", "rate"} or "finding" not in shortcut:
        raise VlmprobeError(
            f"synthetic-cxr shortcut is {shortcut!r}.",
            f"give `shortcut: {{finding: <one of {', '.join(FINDINGS)}>, rate: <agreement probability>}}`.",
        )
    if shortcut["finding"] not in FINDINGS:
        raise VlmprobeError(
            f"synthetic-cxr shortcut finding {shortcut['finding']!r} is not a finding.", f"use one of {', '.join(FINDINGS)}."
        )
    rate = shortcut.get("rate", 0.9)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
        raise VlmprobeError(f"synthetic-cxr shortcut rate is {rate!r}.", "give a probability between 0 and 1.")
    return Shortcut(finding=str(shortcut["finding"]), rate=float(rate))


def _sample_anatomy(rng: np.random.Generator) -> Anatomy:
    u = rng.uniform
    right_base = u(0.72, 0.77)  # patient's right hemidiaphragm (image left) sits a little higher
    lungs = (
        Lung(side=-1, top=u(0.12, 0.16), base=right_base, width=u(0.27, 0.31), dome=u(0.04, 0.07)),
        Lung(side=1, top=u(0.12, 0.16), base=right_base + u(0.0, 0.03), width=u(0.26, 0.30), dome=u(0.04, 0.07)),
    )
    heart = Heart(
        cu=0.5 + u(0.035, 0.06),
        cv=u(0.57, 0.61),
        half_width=u(0.135, 0.16),  # cardiothoracic ratio ~0.38-0.50
        half_height=u(0.10, 0.12),
        angle=u(0.25, 0.45),
        floor=lungs[1].base - lungs[1].dome * u(0.4, 0.7),
    )
    return Anatomy(
        shift_u=u(-0.035, 0.035),
        shift_v=u(-0.035, 0.035),
        scale=u(0.92, 1.04),
        angle=u(-0.06, 0.06),
        brightness=u(-0.05, 0.05),
        contrast=u(0.85, 1.15),
        gamma=u(0.85, 1.2),
        blur_px=u(0.35, 0.75),
        noise_std=u(0.008, 0.025),
        body_half_width=u(0.42, 0.47),
        soft_tissue=u(0.50, 0.60),
        mediastinum=u(0.045, 0.06),
        lungs=lungs,
        heart=heart,
        lung_depth=u(0.30, 0.38),
        marking_amp=u(0.035, 0.06),
        rib_amp=u(0.045, 0.08),
        rib_top=u(0.10, 0.13),
        rib_spacing=u(0.068, 0.078),
        rib_thickness=u(0.009, 0.013),
        clavicle_amp=u(0.10, 0.15),
        clavicle_v=u(0.16, 0.20),
        spine_amp=u(0.06, 0.10),
        gastric_bubble=u(0.03, 0.09) if rng.random() < 0.6 else 0.0,
        markings_seed=int(rng.integers(2**31)),
        noise_seed=int(rng.integers(2**31)),
    )


def _point_in_lung(
    rng: np.random.Generator, anatomy: Anatomy, lung: Lung, margin: float, v_range: tuple[float, float]
) -> tuple[float, float]:
    """A point ``margin`` inside ``lung`` and clear of the (normal) heart, with v in ``v_range`` (fractions
    of the lung's height). Rejection sampling; the lung centre if nothing fits."""
    height = lung.base - lung.top
    for _ in range(200):
        m = anatomy.mediastinum + rng.uniform(0.0, lung.width)
        v = lung.top + height * rng.uniform(*v_range)
        uu = np.array([0.5 + lung.side * m])
        vv = np.array([v])
        if _lung_margin(uu, vv, lung, anatomy)[0] > margin and _heart_level(uu, vv, anatomy.heart)[0] > 1.15:
            return float(uu[0]), v
    return 0.5 + lung.side * (anatomy.mediastinum + 0.55 * lung.width), lung.top + 0.55 * height


def _sample_finding(label: str, rng: np.random.Generator, anatomy: Anatomy) -> Finding:
    u = rng.uniform
    side = int(rng.choice(_SIDES))
    lung = anatomy.lungs[_SIDES.index(side)]
    if label == "nodule":
        radius = u(0.03, 0.052)
        cu, cv = _point_in_lung(rng, anatomy, lung, radius + 0.01, (0.15, 0.9))
        params = {
            "cu": cu, "cv": cv, "radius": radius, "amp": u(0.22, 0.32),
            "lobe_amp": u(0.0, 0.12), "lobe_phase": u(0, 2 * math.pi),
        }  # fmt: skip
    elif label == "opacity":
        radius = u(0.065, 0.115)
        cu, cv = _point_in_lung(rng, anatomy, lung, 0.4 * radius, (0.3, 0.95))
        params = {
            "cu": cu, "cv": cv, "radius": radius, "aspect": u(0.7, 1.3), "angle": u(0, math.pi),
            "amp": u(0.22, 0.32), "texture_seed": float(rng.integers(2**31)),
        }  # fmt: skip
    elif label == "effusion":
        params = {"depth": u(0.08, 0.16), "meniscus": u(0.04, 0.09), "fill": u(0.8, 0.95)}
    elif label == "pneumothorax":
        params = {"collapse": u(0.72, 0.84), "darken": u(0.07, 0.11), "line_amp": u(0.12, 0.2)}
    elif label == "cardiomegaly":
        side = 0
        # The enlarged ellipse contains the normal one (growth > shift), so the box is the whole heart.
        # Mild cases overlap the widest normal hearts, as in real cardiothoracic ratios near 0.5.
        params = {"grow_w": u(1.22, 1.45), "grow_h": u(1.12, 1.25), "shift_u": u(0.0, 0.02), "shift_v": u(-0.01, 0.01)}
    else:  # pragma: no cover - FINDINGS and this function are kept in step
        raise AssertionError(label)
    return Finding(label=label, side=side, params=params)


def sample_case(
    seed: int,
    index: int,
    image_size: int = 128,
    prevalence: Mapping[str, float] | None = None,
    shortcut: Mapping | Shortcut | None = None,
) -> Case:
    """Draw image ``index`` of the data set ``seed``: anatomy, findings present, their geometry, the marker.

    Nothing drawn depends on ``image_size``: the same case rendered at 64 and 128 px shows the same chest.
    """
    rates = resolve_prevalence(prevalence)
    # One uniform per finding, always all of them, so one finding's rate never shifts another's draw.
    draws = _rng(seed, index, _LABEL_STREAM).random(len(FINDINGS))
    anatomy = _sample_anatomy(_rng(seed, index, _ANATOMY_STREAM))
    findings = tuple(
        _sample_finding(name, _rng(seed, index, _FINDING_STREAM + k), anatomy)
        for k, (name, draw) in enumerate(zip(FINDINGS, draws, strict=True))
        if draw < rates[name]
    )
    marker = False
    rule = shortcut if isinstance(shortcut, Shortcut) else resolve_shortcut(shortcut)
    if rule is not None:
        has_finding = any(finding.label == rule.finding for finding in findings)
        marker = bool(_rng(seed, index, _MARKER_STREAM).random() < rule.marker_probability(has_finding))
    return Case(index=index, image_size=image_size, anatomy=anatomy, findings=findings, marker=marker)


_ACQUISITION_FIELDS = ("shift_u", "shift_v", "scale", "angle", "brightness", "contrast", "gamma", "blur_px", "noise_std")
REPEAT_EXPOSURE_JITTER = 0.3
"""How far a patient's further image moves its acquisition towards an independent draw (0: only new noise)."""


def patient_case(
    seed: int,
    index: int,
    image_size: int = 128,
    prevalence: Mapping[str, float] | None = None,
    images_per_patient: int = 1,
    shortcut: Mapping | Shortcut | None = None,
) -> Case:
    """Image ``index`` when every ``images_per_patient`` consecutive images are one patient: the case of the
    patient's first image (its marker included), its acquisition jittered by image ``index``'s own draw (a
    repeat exposure)."""
    first = index - index % images_per_patient
    case = sample_case(seed, first, image_size, prevalence, shortcut)
    if index == first:
        return case
    fresh = _sample_anatomy(_rng(seed, index, _ANATOMY_STREAM))
    own = case.anatomy
    # a repeat exposure: acquisition moved a fraction of the way towards a fresh draw, new quantum noise
    moved = {name: getattr(own, name) + REPEAT_EXPOSURE_JITTER * (getattr(fresh, name) - getattr(own, name)) for name in _ACQUISITION_FIELDS}
    anatomy = replace(own, **moved, noise_seed=fresh.noise_seed)
    return replace(case, index=index, anatomy=anatomy)


# ----------------------------------------------------------------------------------------------------
# Geometry (vectorised over anatomy-coordinate arrays)
# ----------------------------------------------------------------------------------------------------


def _smoothstep(x: np.ndarray) -> np.ndarray:
    # maximum/minimum rather than np.clip: this runs ~25 times per image and np.clip's overhead dominated
    x = np.maximum(x, 0.0)
    np.minimum(x, 1.0, out=x)
    return x * x * (3.0 - 2.0 * x)


def _soft_inside(margin: np.ndarray, edge: float) -> np.ndarray:
    """0 outside, 1 inside, a linear-ish ramp ``edge`` wide centred on the border; compact support."""
    return _smoothstep(margin / edge + 0.5)


def _lung_margin(u: np.ndarray, v: np.ndarray, lung: Lung, anatomy: Anatomy) -> np.ndarray:
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


def _heart_level(u: np.ndarray, v: np.ndarray, heart: Heart) -> np.ndarray:
    """Ellipse level of the heart (< 1 inside), before the flat floor is applied."""
    du, dv = u - heart.cu, v - heart.cv
    c, s = math.cos(heart.angle), math.sin(heart.angle)
    a = (c * du + s * dv) / heart.half_width
    b = (-s * du + c * dv) / heart.half_height
    return np.sqrt(a * a + b * b)


def _heart_mask(u: np.ndarray, v: np.ndarray, heart: Heart, edge: float) -> np.ndarray:
    level = _heart_level(u, v, heart)
    inside = _soft_inside((1.0 - level) * heart.half_height, edge)
    return inside * _soft_inside(heart.floor - v, edge)


def _enlarged_heart(heart: Heart, params: Mapping[str, float]) -> Heart:
    return replace(
        heart,
        cu=heart.cu + params["shift_u"],
        cv=heart.cv + params["shift_v"],
        half_width=heart.half_width * params["grow_w"],
        half_height=heart.half_height * params["grow_h"],
    )


def _segment_distance(u, v, p0: tuple[float, float], p1: tuple[float, float]) -> np.ndarray:
    du, dv = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((u - p0[0]) * du + (v - p0[1]) * dv) / (du * du + dv * dv), 0.0, 1.0)
    return np.hypot(u - p0[0] - t * du, v - p0[1] - t * dv)


# ----------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------


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
    lungs = {lung.side: _soft_inside(_lung_margin(u, v, lung, a), 1.5 * px) for lung in a.lungs}
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
    half_width = 0.13 + (a.body_half_width - 0.13) * np.sqrt(_smoothstep((v - 0.035) / 0.15))
    body = _soft_inside(half_width - m, 2.0 * px)
    thickness = np.sqrt(np.clip(1.0 - (m / half_width) ** 2, 0.0, 1.0))  # thinner tissue at the edges
    density = 0.04 + body * a.soft_tissue * (0.7 + 0.3 * thickness)
    # spine with faint vertebral bodies, trachea as a dark column in the upper mediastinum
    spine = _soft_inside(0.032 - m, 2.0 * px) * (0.85 + 0.15 * np.cos(2 * math.pi * v / 0.065))
    density += a.spine_amp * spine * _smoothstep((v - 0.04) / 0.1)
    trachea = _soft_inside(0.016 - m, 1.5 * px) * _soft_inside(0.34 - v, 0.04)
    density -= 0.09 * trachea
    # clavicles: bright bars from the sternal notch rising laterally
    for side in _SIDES:
        p0 = (0.5 + side * 0.045, a.clavicle_v + 0.02)
        p1 = (0.5 + side * 0.31, a.clavicle_v - 0.065)
        clavicle = _soft_inside(0.011 - _segment_distance(u, v, p0, p1), 2.0 * px)
        density += a.clavicle_amp * clavicle
    # ribs: posterior arcs (highest a third of the way out, dropping laterally), fainter anterior ribs
    # sloping down towards the sternum; seen mostly against the dark lungs
    chest = _soft_inside(a.body_half_width - 0.025 - m, 3.0 * px) * _soft_inside(m - 0.03, 2.0 * px)
    posterior = _nearest_band((v - a.rib_top - 2.6 * (m - 0.14) ** 2) / a.rib_spacing, 10) * a.rib_spacing
    anterior = _nearest_band((v - a.rib_top - 0.05 - 0.4 * (0.42 - m)) / (1.05 * a.rib_spacing), 9)
    anterior *= 1.05 * a.rib_spacing
    ribs = np.exp(-((posterior / a.rib_thickness) ** 2))
    ribs += 0.4 * np.exp(-((anterior / (0.8 * a.rib_thickness)) ** 2)) * _soft_inside(m - 0.13, 0.03)
    ribs *= chest * _soft_inside(0.86 - v, 0.05)
    density += a.rib_amp * ribs * (0.15 + 0.85 * aerated)
    # gas bubble of the stomach under the left hemidiaphragm (image right): a dark distractor, no finding
    if a.gastric_bubble > 0:
        left = a.lungs[1]
        bubble = np.hypot((u - 0.5 - 0.6 * left.width) / 0.05, (v - left.base - 0.045) / 0.03)
        density -= a.gastric_bubble * _soft_inside((1.0 - bubble) * 0.03, 3.0 * px)
    return density


def _mediastinal_shadow(scene: _Scene, a: Anatomy) -> np.ndarray:
    """Vascular pedicle widening down to the heart, and the aortic knob: blends the heart into the mediastinum."""
    u, v, px = scene.u, scene.v, scene.px
    heart_top = a.heart.cv - a.heart.half_height
    widening = _smoothstep((v - (heart_top - 0.17)) / 0.17)
    pedicle_width = a.mediastinum + 0.01 + 0.045 * widening
    pedicle = _soft_inside(pedicle_width - np.abs(u - 0.5 - 0.015 * widening), 1.5 * px)
    pedicle *= _soft_inside(a.heart.cv - v, 2 * px)
    knob = _soft_inside(0.03 - np.hypot(u - 0.5 - a.mediastinum - 0.025, v - heart_top + 0.11), 1.5 * px)
    return np.maximum(pedicle, knob)


def _draw_nodule(scene: _Scene, p: Mapping[str, float]) -> np.ndarray:
    """A dome-shaped blob with a sharp, slightly lobulated margin."""
    du, dv = scene.u - p["cu"], scene.v - p["cv"]
    r = np.hypot(du, dv)
    lobes = 1.0 + p["lobe_amp"] * np.cos(3.0 * np.arctan2(dv, du) + p["lobe_phase"])
    level = np.clip(1.0 - (r / (p["radius"] * lobes)) ** 2, 0.0, 1.0)
    return np.sqrt(level) * _soft_inside(p["radius"] * lobes - r, 1.2 * scene.px)


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
    envelope = _smoothstep((1.0 - r) / 0.45)
    texture = 0.45 + 0.55 * _smoothstep(0.5 + 0.35 * blotch)
    return envelope * texture * lung


def _effusion_mask(scene: _Scene, a: Anatomy, p: Mapping[str, float], lung_spec: Lung, lung: np.ndarray):
    """Fluid filling the lung base up to a meniscus; it blunts the costophrenic angle."""
    m = lung_spec.side * (scene.u - 0.5)
    lateral = np.clip((m - a.mediastinum) / lung_spec.width, 0.0, 1.0)
    level = lung_spec.base - p["depth"] - p["meniscus"] * lateral**2  # fluid climbs the lateral wall
    return _soft_inside(scene.v - level, 2.0 * scene.px) * lung


def _pneumothorax_masks(scene: _Scene, a: Anatomy, p: Mapping[str, float], lung_spec: Lung, lung: np.ndarray):
    """(air, pleural line): the lung shrunk towards its lower hilum leaves an air rim at apex and side."""
    anchor_u = 0.5 + lung_spec.side * (a.mediastinum + 0.15 * lung_spec.width)
    anchor_v = lung_spec.base - 0.12
    k = p["collapse"]
    cu = anchor_u + (scene.u - anchor_u) / k
    cv = anchor_v + (scene.v - anchor_v) / k
    collapsed_margin = _lung_margin(cu, cv, lung_spec, a) * k
    upper = _soft_inside(anchor_v - 0.06 - scene.v, 3.0 * scene.px)
    air = lung * (1.0 - _soft_inside(collapsed_margin, 1.5 * scene.px)) * upper
    line_halfwidth = 0.6 * scene.px
    line = lung * upper * _soft_inside(1.3 * line_halfwidth - np.abs(collapsed_margin), line_halfwidth)
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
        heart = _enlarged_heart(a.heart, by_label["cardiomegaly"].params)
    heart_mask = _heart_mask(scene.u, scene.v, heart, 1.5 * px)
    pedicle = _mediastinal_shadow(scene, a)
    # soft tissue in front of the lungs: the heart, the mediastinum above it
    mediastinal = np.maximum(heart_mask, pedicle)
    lung_any = np.maximum(scene.lungs[-1], scene.lungs[1])
    if "cardiomegaly" in by_label:
        # the box is the cardiac silhouette: the heart where it shows against the lungs, not its upper
        # part hidden in the mediastinum nor its floor hidden in the diaphragm
        masks["cardiomegaly"] = heart_mask * lung_any * (1.0 - pedicle)

    density = _body_and_bones(scene, a, lung_any * (1.0 - mediastinal))
    # lungs look a little less black at the bases and hila, where more tissue overlies them
    lung_darkness = a.lung_depth * (1.0 - 0.18 * _smoothstep((scene.v - 0.3) / 0.5))
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


# ----------------------------------------------------------------------------------------------------
# Data set
# ----------------------------------------------------------------------------------------------------


_FILE_PATTERN = re.compile(rf"^{re.escape(SAMPLE_ID_PREFIX)}\d{{5,}}\.png$")


def sample_id(index: int) -> str:
    return f"{SAMPLE_ID_PREFIX}{index:05d}"


def generate_synthetic_cxr(
    out_dir: Path,
    n_images: int = 600,
    image_size: int = 128,
    seed: int = 0,
    prevalence: Mapping[str, float] | None = None,
    images_per_patient: int = 1,
    shortcut: Mapping | None = None,
) -> list[dict]:
    """Write ``n_images`` PNGs (8-bit grayscale) into ``out_dir`` and return one record per image.

    Record: ``{"sample_id", "path" (absolute), "labels" (["normal"] or sorted finding names),
    "boxes": [{"label", "x0", "y0", "x1", "y1"}, ...]}`` in pixels, ``x1``/``y1`` exclusive; with a
    ``shortcut`` also ``"meta": {"marker": "yes" | "no"}``.
    Re-running overwrites the images and removes ``scxr-*.png`` files a previous, larger run left behind.
    With ``images_per_patient`` > 1 the record's ``"meta"`` also has ``"patient"`` (see :func:`patient_case`).
    """
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise VlmprobeError(f"synthetic-cxr n_images is {n_images!r}.", "give a positive whole number of images.")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise VlmprobeError(
            f"synthetic-cxr image_size is {image_size!r}.", f"give a whole number of pixels >= {MIN_IMAGE_SIZE}."
        )
    if isinstance(images_per_patient, bool) or not isinstance(images_per_patient, int) or images_per_patient < 1:
        raise VlmprobeError(f"synthetic-cxr images_per_patient is {images_per_patient!r}.", "give a whole number >= 1.")
    resolve_prevalence(prevalence)  # fail before writing anything
    rule = resolve_shortcut(shortcut)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    records = []
    wanted = set()
    for index in range(n_images):
        case = patient_case(seed, index, image_size, prevalence, images_per_patient, rule)
        rendered = render_case(case)
        name = sample_id(index)
        path = out_dir / f"{name}.png"
        wanted.add(path.name)
        Image.fromarray(rendered.image).save(path, format="PNG")
        meta = {"patient": f"p{index // images_per_patient:05d}"} if images_per_patient > 1 else {}
        if rule is not None:
            meta[MARKER_META] = "yes" if case.marker else "no"
        record = {
            "sample_id": name,
            "path": str(path),
            "labels": case.labels,
            "boxes": [box.as_record() for box in rendered.boxes],
        }
        if meta:
            record["meta"] = meta
        records.append(record)
    for stale in out_dir.iterdir():
        if _FILE_PATTERN.match(stale.name) and stale.name not in wanted:
            stale.unlink()
    return records


def load_records(spec: Mapping, ctx) -> list:
    """Dataset kind ``synthetic-cxr``: generate the images into the dataset's data folder, one record each.

    Spec keys: ``n_images`` (default 600), ``image_size`` (default 128), ``prevalence`` (optional
    overrides), ``images_per_patient`` (default 1), ``shortcut`` (optional burned-in marker, ``meta_marker``);
    the seed is the workflow's ``seed``.
    """
    from vlmprobe.datasets.records import Box as RecordBox
    from vlmprobe.datasets.records import Record

    generated = generate_synthetic_cxr(
        ctx.data_dir / "images",
        n_images=int(spec.get("n_images", 600)),
        image_size=int(spec.get("image_size", 128)),
        seed=ctx.seed,
        prevalence=spec.get("prevalence"),
        images_per_patient=int(spec.get("images_per_patient", 1)),
        shortcut=spec.get("shortcut"),
    )
    return [
        Record(
            sample_id=item["sample_id"],
            path=item["path"],
            labels=tuple(item["labels"]),
            boxes=tuple(RecordBox(**box) for box in item["boxes"]),
            meta=dict(item.get("meta", {})),
        )
        for item in generated
    ]
