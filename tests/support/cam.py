"""Grad-CAM through a family's own ``cam_layer``, as the heatmaps stage runs it (a linear head on the image tower)."""

from __future__ import annotations

import numpy as np
import torch


def family_map(encoder, batch: torch.Tensor) -> tuple[np.ndarray, str]:
    """(maps (N, H, W) for class 0 of a fixed random head, the rule that chose the layer)."""
    from vlmprobe.heatmaps.maps import compute_maps, target_layer

    torch.manual_seed(0)
    scorer = torch.nn.Sequential(encoder.image_module, torch.nn.Linear(encoder.embed_dim, 2))
    layer = target_layer(encoder)
    return compute_maps(scorer, layer, batch, [0] * len(batch)), layer.rule
