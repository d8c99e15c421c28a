"""Drawing the random part of image ``index``: anatomy, findings and their geometry, the shortcut marker.

Each image has its own ``SeedSequence(seed, spawn_key=(index, purpose))`` and each purpose its own stream,
so image ``i`` is the same whatever ``n_images`` is and one finding's prevalence never moves another draw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from vlmprobe.datasets.synthetic_cxr.geometry import heart_level, lung_margin
from vlmprobe.datasets.synthetic_cxr.specs import FINDINGS, SIDES, Anatomy, Case, Finding, Heart, Lung
from vlmprobe.errors import VlmprobeError

DEFAULT_PREVALENCE: Mapping[str, float] = {
    "opacity": 0.28,
    "cardiomegaly": 0.20,
    "effusion": 0.14,
    "nodule": 0.10,
    "pneumothorax": 0.05,
}

# Streams of one image's SeedSequence (spawn_key=(index, purpose)); findings use _FINDING_STREAM + k.
_LABEL_STREAM, _ANATOMY_STREAM, _NOISE_STREAM, _MARKER_STREAM, _FINDING_STREAM = 0, 1, 2, 3, 10


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
        if lung_margin(uu, vv, lung, anatomy)[0] > margin and heart_level(uu, vv, anatomy.heart)[0] > 1.15:
            return float(uu[0]), v
    return 0.5 + lung.side * (anatomy.mediastinum + 0.55 * lung.width), lung.top + 0.55 * height


def _sample_finding(label: str, rng: np.random.Generator, anatomy: Anatomy) -> Finding:
    u = rng.uniform
    side = int(rng.choice(SIDES))
    lung = anatomy.lungs[SIDES.index(side)]
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
