"""The plain data of one synthetic radiograph: what :mod:`.sampling` draws and :mod:`.render` draws from.

Everything is in "anatomy" coordinates, the unit square, which the acquisition affine of :class:`Anatomy`
maps to pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from vlmprobe.datasets.records import Box

FINDINGS: tuple[str, ...] = ("cardiomegaly", "effusion", "nodule", "opacity", "pneumothorax")
NORMAL_LABEL = "normal"

SIDES = (-1, 1)  # -1: lung on the image's left (patient's right), +1: image right (patient's left)


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
    """One planted finding; ``params`` are in anatomy coordinates (see the ``_draw_*`` functions of :mod:`.render`)."""

    label: str
    side: int
    params: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    index: int
    image_size: int
    anatomy: Anatomy
    findings: tuple[Finding, ...]
    marker: bool = False  # the burned-in shortcut marker (see the package docstring)

    @property
    def labels(self) -> list[str]:
        names = sorted(f.label for f in self.findings)
        return names or [NORMAL_LABEL]


@dataclass(frozen=True)
class Rendered:
    image: np.ndarray  # uint8, (image_size, image_size)
    boxes: tuple[Box, ...]  # one per rendered finding, in the order of FINDINGS
