"""Grad-CAM target layers: the reshapes from a layer's output to a feature map, and the rules the families share.

Each family declares its default layer in :meth:`vlmprobe.models.ModelFamily.cam_layer`; this module holds
what several families need (the token reshapes, the timm rule open_clip's timm towers reuse, the
last-``Conv2d`` fallback).

Target layers (the activations whose gradient-weighted sum is the map)
-----------------------------------------------------------------------
=================================  ==========================================  ===================================
model family / architecture        default target layer                        reshape to (B, C, h, w)
=================================  ==========================================  ===================================
open_clip VisionTransformer        ``visual.transformer.resblocks[-1].ln_1``   drop the class token, tokens ->
                                                                               grid (``visual.grid_size``)
open_clip ModifiedResNet (RN50..)  ``visual.layer4[-1]`` (last bottleneck)     none (already NCHW)
open_clip timm tower (BiomedCLIP)  the timm rule below on ``visual.trunk``     as below
timm ViT-like (``blocks``,         ``blocks[-1].norm1``                        drop ``num_prefix_tokens`` (class +
``num_prefix_tokens``)                                                         register tokens), tokens -> grid
timm CNN / hierarchical            the module of the last ``feature_info``     NHWC outputs (Swin, MaxViT
                                   entry (last stage: ResNet ``layer4``,       stages) permuted to NCHW
                                   ConvNeXt ``stages.3``)
torchvision VisionTransformer      ``encoder.layers[-1].ln_1``                 drop the class token
torchvision ResNet-like            ``layer4[-1]``                              none
torchvision VGG, DenseNet,         ``features[-1]`` (last block of the         Swin's NHWC permuted to NCHW
EfficientNet, ConvNeXt, MobileNet  feature extractor)
pixels                             none: no layers, no map
anything else                      the last ``Conv2d`` in the module           none
=================================  ==========================================  ===================================

Why the norm *before* the last attention for ViTs: the class token leaves the last block through its
attention, so the patch tokens entering that attention are the last place where gradients still say
which patch mattered (the output of the last block's patch tokens gets no gradient from a
class-token-pooled model). A configured layer (``heatmaps: target_layers:``) replaces the family's
default; its reshape is :class:`GuessedReshape`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from vlmprobe.errors import VlmprobeError


class TokenGrid:
    """Reshape transformer tokens (B, N, C) to a feature map (B, C, h, w) for Grad-CAM.

    Drops ``num_prefix_tokens`` leading tokens (class token, register tokens). The grid is
    ``grid_size`` when it matches the token count, else the square grid the tokens make;
    ``batch_first=False`` accepts (N, B, C) layouts (older open_clip transformers).
    """

    def __init__(self, num_prefix_tokens: int, grid_size: Sequence[int] | None = None, batch_first: bool = True):
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.grid_size = tuple(int(v) for v in grid_size) if grid_size is not None else None
        self.batch_first = batch_first

    def __call__(self, tensor):
        if tensor.ndim != 3:
            raise ValueError(f"expected tokens of shape (B, N, C), got {tuple(tensor.shape)}")
        if not self.batch_first:
            tensor = tensor.transpose(0, 1)
        tokens = tensor[:, self.num_prefix_tokens :, :]
        batch, count, channels = tokens.shape
        if self.grid_size and self.grid_size[0] * self.grid_size[1] == count:
            height, width = self.grid_size
        else:
            side = math.isqrt(count)
            if side * side != count:
                raise ValueError(f"{count} patch tokens (after {self.num_prefix_tokens} prefix tokens) do not form a square grid")
            height = width = side
        return tokens.reshape(batch, height, width, channels).permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return f"TokenGrid(num_prefix_tokens={self.num_prefix_tokens}, grid_size={self.grid_size}, batch_first={self.batch_first})"


class ChannelsLastToFirst:
    """(B, h, w, C) -> (B, C, h, w) for stages that emit NHWC (Swin, MaxViT); NCHW passes unchanged."""

    def __init__(self, channels: int):
        self.channels = int(channels)

    def __call__(self, tensor):
        if tensor.ndim == 4 and tensor.shape[1] != self.channels and tensor.shape[-1] == self.channels:
            return tensor.permute(0, 3, 1, 2)
        return tensor

    def __repr__(self) -> str:
        return f"ChannelsLastToFirst(channels={self.channels})"


class GuessedReshape:
    """For user-chosen layers: 3-D tokens -> the largest square grid (the rest are prefix tokens); 4-D unchanged."""

    def __call__(self, tensor):
        if tensor.ndim == 4:
            return tensor
        if tensor.ndim != 3:
            raise ValueError(f"cannot turn an activation of shape {tuple(tensor.shape)} into a map")
        side = math.isqrt(tensor.shape[1])
        return TokenGrid(tensor.shape[1] - side * side)(tensor)

    def __repr__(self) -> str:
        return "GuessedReshape()"


def module_name(root, module) -> str:
    """The dotted path of ``module`` inside ``root`` (recorded in every output)."""
    for name, candidate in root.named_modules():
        if candidate is module:
            return name
    raise ValueError("target layer is not inside the encoder's image module")


def last_conv(model):
    """The last ``Conv2d`` of ``model``: the default layer of anything no rule knows."""
    import torch

    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise VlmprobeError(
            f"No Conv2d and no known transformer layout in {type(model).__name__}: no default Grad-CAM layer.",
            "name one with `heatmaps: target_layers: {<model id>: <dotted module path>}` in config.yaml.",
        )
    return convs[-1]


def timm_layer(model, prefix: str) -> tuple[Any, Callable | None, str]:
    """The timm rule (a timm model, or open_clip's timm tower with ``prefix`` ``'visual.trunk.'``)."""
    if hasattr(model, "blocks") and hasattr(model, "num_prefix_tokens") and hasattr(model, "patch_embed"):
        grid = getattr(model.patch_embed, "grid_size", None)
        return model.blocks[-1].norm1, TokenGrid(model.num_prefix_tokens, grid), f"timm ViT: {prefix}blocks[-1].norm1"
    info = getattr(model, "feature_info", None)
    if info:
        last = info[-1] if isinstance(info, list) else info.info[-1]
        module = model.get_submodule(last["module"])
        return module, ChannelsLastToFirst(last["num_chs"]), f"timm last stage: {prefix}{last['module']}"
    module = last_conv(model)
    return module, None, f"timm, no feature_info: last Conv2d under {prefix or 'the model'}"
