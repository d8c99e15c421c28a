"""Attribution maps (Grad-CAM and friends, via pytorch-grad-cam) over any encoder, in three settings.

A map answers "which pixels drove this label's score?". The score is what the setting decides with:

=================  =========================================================================================
setting            target score of label *l* (one output of a *scorer*: batch -> (B, n_labels))
=================  =========================================================================================
zs (zero-shot)     cosine similarity of the image embedding with label *l*'s prompt embedding (the prompt
                   ensemble of :mod:`vlmprobe.multilabel.zero_shot`): :class:`ZeroShotScorer`
lp (linear probe)  the probe's logit ``embedding @ W[l] + b[l]``: the multi-label study's probe head (its
                   standardisation folded in) on top of the frozen encoder: :class:`HeadScorer`
ft (fine-tuned)    the fine-tuned head's logit on the fine-tuned encoder
                   (:func:`vlmprobe.multilabel.finetune.load_finetuned`): :class:`HeadScorer`
=================  =========================================================================================

Per image, maps are drawn for every true label and for the top false positive (the highest-scoring
label the image does not have), so a map of what the model wrongly sees sits beside what it should.

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
anything else                      the last ``Conv2d`` in the module           none
=================================  ==========================================  ===================================

Why the norm *before* the last attention for ViTs: the class token leaves the last block through its
attention, so the patch tokens entering that attention are the last place where gradients still say
which patch mattered (the output of the last block's patch tokens gets no gradient from a
class-token-pooled model). A dotted module path (relative to ``Encoder.image_module``) overrides the
default per model (``heatmaps: target_layers:`` in the config); its reshape is guessed from the
output's shape (3-D tokens: the largest square grid, the rest prefix tokens).

Geometry: every image is resized whole to the model's input size (the size its preprocessing crops
to), then converted and normalised with the model's own mean/std. There is deliberately no centre
crop: a finding at the border must stay visible, and every map pixel must map back to an image
pixel. The map is computed at the input resolution and resized (bilinear) to the original image's
size, so annotation boxes in original pixel coordinates compare directly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vlmprobe.errors import VlmprobeError
from vlmprobe.runtime import resolve_device

log = logging.getLogger(__name__)

SETTINGS = ("zs", "lp", "ft")
"""The multi-label study's settings, named as there: zero-shot, linear probe, fine-tuned."""

# Config name (lower case, without '-', '_' and spaces) -> pytorch_grad_cam class name.
METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "gradcamplusplus": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
    "scorecam": "ScoreCAM",
    "gradcamelementwise": "GradCAMElementWise",
    "randomcam": "RandomCAM",
}


def method_class(method: str):
    """The pytorch-grad-cam class for a configured method name ('gradcam', 'GradCAM++', 'eigen-cam', ...)."""
    import pytorch_grad_cam

    key = method.lower().replace("-", "").replace("_", "").replace(" ", "")
    if key not in METHODS:
        raise VlmprobeError(
            f"Unknown attribution method {method!r} (heatmaps: method).",
            f"use one of {sorted(set(METHODS) - {'gradcamplusplus'})}.",
        )
    return getattr(pytorch_grad_cam, METHODS[key])


# ----------------------------------------------------------------------------------------------------
# Target layers and token reshapes
# ----------------------------------------------------------------------------------------------------


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


@dataclass
class CamLayer:
    module: Any
    """The ``torch.nn.Module`` whose output is attributed."""
    name: str
    """Its dotted path inside ``Encoder.image_module`` (recorded in every output)."""
    reshape_transform: Callable[[Any], Any] | None
    rule: str
    """Which row of the table in the module docstring chose it."""


def _module_name(root, module) -> str:
    for name, candidate in root.named_modules():
        if candidate is module:
            return name
    raise ValueError("target layer is not inside the encoder's image module")


def _timm_layer(model, prefix: str) -> tuple[Any, Callable | None, str]:
    if hasattr(model, "blocks") and hasattr(model, "num_prefix_tokens") and hasattr(model, "patch_embed"):
        grid = getattr(model.patch_embed, "grid_size", None)
        return model.blocks[-1].norm1, TokenGrid(model.num_prefix_tokens, grid), f"timm ViT: {prefix}blocks[-1].norm1"
    info = getattr(model, "feature_info", None)
    if info:
        last = info[-1] if isinstance(info, list) else info.info[-1]
        module = model.get_submodule(last["module"])
        return module, ChannelsLastToFirst(last["num_chs"]), f"timm last stage: {prefix}{last['module']}"
    module = _last_conv(model)
    return module, None, f"timm, no feature_info: last Conv2d under {prefix or 'the model'}"


def _last_conv(model):
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise VlmprobeError(
            f"No Conv2d and no known transformer layout in {type(model).__name__}: no default Grad-CAM layer.",
            "name one with `heatmaps: target_layers: {<model id>: <dotted module path>}` in config.yaml.",
        )
    return convs[-1]


def _open_clip_layer(encoder) -> tuple[Any, Callable | None, str]:
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.timm_model import TimmModel
    from open_clip.transformer import VisionTransformer

    visual = encoder.extras["open_clip_model"].visual
    if isinstance(visual, VisionTransformer):
        batch_first = getattr(visual.transformer, "batch_first", True)
        return (
            visual.transformer.resblocks[-1].ln_1,
            TokenGrid(1, visual.grid_size, batch_first=batch_first),
            "open_clip ViT: visual.transformer.resblocks[-1].ln_1",
        )
    if isinstance(visual, ModifiedResNet):
        return visual.layer4[-1], None, "open_clip ModifiedResNet: visual.layer4[-1]"
    if isinstance(visual, TimmModel):
        return _timm_layer(visual.trunk, "visual.trunk.")
    return _last_conv(visual), None, f"open_clip {type(visual).__name__}: last Conv2d"


def _torchvision_layer(model) -> tuple[Any, Callable | None, str]:
    from torchvision.models.swin_transformer import SwinTransformer
    from torchvision.models.vision_transformer import VisionTransformer

    if isinstance(model, VisionTransformer):
        grid = (model.image_size // model.patch_size,) * 2
        return model.encoder.layers[-1].ln_1, TokenGrid(1, grid), "torchvision ViT: encoder.layers[-1].ln_1"
    if isinstance(model, SwinTransformer):
        channels = model.norm.normalized_shape[0]
        return model.features[-1], ChannelsLastToFirst(channels), "torchvision Swin: features[-1]"
    if hasattr(model, "layer4"):
        return model.layer4[-1], None, "torchvision ResNet-like: layer4[-1]"
    if hasattr(model, "features"):
        return model.features[-1], None, "torchvision: features[-1]"
    return _last_conv(model), None, "torchvision: last Conv2d"


def target_layer(encoder, override: str | None = None) -> CamLayer:
    """The layer Grad-CAM attributes for ``encoder`` (see the table above), or the ``override`` path."""
    root = encoder.image_module
    if override:
        try:
            module = root.get_submodule(override)
        except AttributeError as error:
            names = [name for name, _ in root.named_modules() if name][-8:]
            raise VlmprobeError(
                f"Model {encoder.model_id!r}: heatmaps target layer {override!r} is not a module of its image tower.",
                f"give a dotted path inside Encoder.image_module, e.g. one of {names}.",
            ) from error
        return CamLayer(module, override, GuessedReshape(), "configured (heatmaps: target_layers)")
    if encoder.family == "pixels":
        raise VlmprobeError(
            f"Model {encoder.model_id!r} is the pixels baseline: it has no layers, so no Grad-CAM map.",
            "leave it out of `heatmaps: models`.",
        )
    if encoder.family == "open_clip":
        module, reshape, rule = _open_clip_layer(encoder)
    elif encoder.family == "timm":
        module, reshape, rule = _timm_layer(root, "")
    elif encoder.family == "torchvision":
        module, reshape, rule = _torchvision_layer(root)
    else:
        module, reshape, rule = _last_conv(root), None, f"{encoder.family}: last Conv2d"
    return CamLayer(module, _module_name(root, module), reshape, rule)


# ----------------------------------------------------------------------------------------------------
# Scorers: batch -> (B, n_labels), one per setting
# ----------------------------------------------------------------------------------------------------


class ZeroShotScorer(torch.nn.Module):
    """Zero-shot: ``scale * normalise(image_module(x)) @ class_embeddings.T`` (cosine similarities for scale 1).

    ``class_embeddings`` (n_labels, D): each label's unit prompt embedding
    (:func:`vlmprobe.multilabel.zero_shot.class_text_embeddings`). A positive scale does not change a Grad-CAM map
    (the maps are min-max scaled), so the default 1 keeps the score the zero-shot study reports.
    """

    def __init__(self, image_module, class_embeddings, scale: float = 1.0):
        super().__init__()
        self.image_module = image_module
        self.register_buffer("class_embeddings", torch.as_tensor(np.asarray(class_embeddings), dtype=torch.float32))
        self.scale = float(scale)

    def forward(self, images):
        features = self.image_module(images).float()
        features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return self.scale * features @ self.class_embeddings.T


class HeadScorer(torch.nn.Module):
    """A linear head on the encoder: ``head(image_module(x))`` -- the linear probe (frozen encoder, the
    probe's weights with its standardisation folded in) and the fine-tuned model (fine-tuned encoder and
    head) alike; both heads are :class:`vlmprobe.multilabel.linear_probe.LinearHead` files."""

    def __init__(self, image_module, head):
        super().__init__()
        self.image_module = image_module
        self.head = head

    def forward(self, images):
        return self.head(self.image_module(images)).float()


def linear_layer(weight, bias) -> torch.nn.Linear:
    """A ``torch.nn.Linear`` holding a head's (C, D) weight and (C,) bias (a ``LinearHead`` file's arrays)."""
    weight = torch.as_tensor(np.asarray(weight), dtype=torch.float32)
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(torch.as_tensor(np.asarray(bias), dtype=torch.float32).reshape(-1))
    return layer


# ----------------------------------------------------------------------------------------------------
# Geometry: image -> model input -> map -> original size
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputGeometry:
    size: tuple[int, int]
    """(height, width) the model sees."""
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str


def _as_hw(size) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    size = list(size)
    return (int(size[0]), int(size[-1]))


def input_geometry(encoder) -> InputGeometry:
    """Input size, normalisation and interpolation of the encoder's own preprocessing."""
    preprocess = encoder.preprocess
    steps = list(getattr(preprocess, "transforms", [preprocess]))
    size = mean = std = None
    interpolation = "bilinear"
    for step in steps:
        name = type(step).__name__
        if name == "ImageClassification":  # torchvision weights' transforms()
            size = _as_hw(step.crop_size)
            mean, std = tuple(step.mean), tuple(step.std)
            interpolation = step.interpolation.value
        elif name in {"CenterCrop", "CenterCropOrPad", "RandomCrop"}:
            size = _as_hw(step.size)
        elif name in {"Resize", "ResizeKeepRatio"}:
            if size is None and not isinstance(step.size, int) and len(step.size) == 2:
                size = _as_hw(step.size)
            elif size is None and isinstance(getattr(step, "size", None), int):
                size = _as_hw(step.size)
            mode = getattr(step, "interpolation", None)
            interpolation = getattr(mode, "value", str(mode or interpolation))
        elif name == "Normalize":
            mean, std = tuple(float(v) for v in step.mean), tuple(float(v) for v in step.std)
    if size is None:
        raise VlmprobeError(
            f"Model {encoder.model_id!r}: cannot tell its input size from its preprocessing ({steps}).",
            "set `image_size:` on the model.",
        )
    return InputGeometry(size=size, mean=mean or (0.0, 0.0, 0.0), std=std or (1.0, 1.0, 1.0), interpolation=str(interpolation))


def to_input(image, geometry: InputGeometry):
    """PIL RGB image -> normalised tensor (3, h, w): the whole image resized, no crop."""
    from PIL import Image

    resample = {"nearest": Image.Resampling.NEAREST, "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}.get(
        geometry.interpolation, Image.Resampling.BILINEAR
    )
    height, width = geometry.size
    resized = image.convert("RGB").resize((width, height), resample)
    array = np.asarray(resized, dtype=np.float32) / 255.0
    array = (array - np.asarray(geometry.mean, dtype=np.float32)) / np.asarray(geometry.std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def resize_map(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A map at input resolution -> (H, W) of the original image, bilinear (no overshoot: values stay in range), float32."""
    from PIL import Image

    cam = np.asarray(cam, dtype=np.float32)
    if cam.shape == tuple(shape):
        return cam
    resized = Image.fromarray(cam, mode="F").resize((int(shape[1]), int(shape[0])), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


# ----------------------------------------------------------------------------------------------------
# Maps
# ----------------------------------------------------------------------------------------------------


def scores_of(scorer, inputs, batch_size: int = 32, device: str = "cpu") -> np.ndarray:
    """Scorer outputs (N, n_labels) for a stack of inputs, without gradients."""
    outputs = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            outputs.append(scorer(inputs[start : start + batch_size].to(device)).float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)


def compute_maps(
    scorer,
    layer: CamLayer,
    inputs,
    targets: Sequence[int],
    method: str = "gradcam",
    batch_size: int = 16,
    device: str = "cpu",
) -> np.ndarray:
    """Maps (N, h, w) in [0, 1] at input resolution: input ``i`` attributed for output ``targets[i]``.

    Each map is min-max scaled on its own by pytorch-grad-cam (so maps compare by shape, not by
    size); a map with no positive evidence is all zeros.
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if len(inputs) != len(targets):
        raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
    cam_class = method_class(method)
    scorer = scorer.to(device).eval()
    # Gradients must reach the target layer even when a caller froze the encoder (a linear probe's encoder).
    for parameter in scorer.parameters():
        parameter.requires_grad_(True)
    maps = []
    with cam_class(model=scorer, target_layers=[layer.module], reshape_transform=layer.reshape_transform) as cam:
        if hasattr(cam, "batch_size"):
            cam.batch_size = batch_size
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start : start + batch_size].to(device)
            batch_targets = [ClassifierOutputTarget(int(t)) for t in targets[start : start + batch_size]]
            maps.append(np.asarray(cam(input_tensor=batch, targets=batch_targets), dtype=np.float32))
    height, width = inputs.shape[-2:]
    return np.concatenate(maps) if maps else np.zeros((0, height, width), dtype=np.float32)


def choose_targets(scores: np.ndarray, true_indices: Sequence[Sequence[int]]) -> list[list[tuple[int, str]]]:
    """Per image: (label index, 'true') for each true label, then (index, 'false_positive') for the
    highest-scoring label that is not true (none when every label is true)."""
    chosen = []
    for row, truth in zip(scores, true_indices, strict=True):
        targets = [(int(index), "true") for index in sorted(truth)]
        others = [index for index in range(len(row)) if index not in set(truth)]
        if others:
            targets.append((int(max(others, key=lambda index: row[index])), "false_positive"))
        chosen.append(targets)
    return chosen


# ----------------------------------------------------------------------------------------------------
# The stage: one (dataset, model, setting) job
# ----------------------------------------------------------------------------------------------------


def select_images(table, max_annotated: int, n_random: int, seed: int) -> list[int]:
    """Manifest rows to draw maps for: test images with boxes or a mask, up to ``max_annotated``
    (a seeded sample when there are more), plus ``n_random`` other test images (seeded).

    The choice depends only on the manifest, the two limits and the seed, never on the model or
    the setting, so every model and setting of a dataset is drawn on the same images. Rows come
    back in manifest order.
    """
    columns = table.column_names
    split = table.column("split").to_pylist()
    boxes = table.column("boxes").to_pylist() if "boxes" in columns else [None] * table.num_rows
    masks = table.column("annotation_path").to_pylist() if "annotation_path" in columns else [None] * table.num_rows
    test = [i for i, value in enumerate(split) if value == "test"]
    annotated = [i for i in test if boxes[i] or masks[i]]
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(5,)))
    if len(annotated) > max_annotated:
        annotated = sorted(rng.choice(annotated, size=max_annotated, replace=False).tolist()) if max_annotated > 0 else []
    chosen = set(annotated)
    others = [i for i in test if i not in chosen]
    extra = sorted(rng.choice(others, size=min(n_random, len(others)), replace=False).tolist()) if others and n_random > 0 else []
    return sorted(chosen | set(extra))


@dataclass
class SettingModel:
    """What a setting attributes: the scorer, the encoder inside it, and the labels of its outputs."""

    scorer: torch.nn.Module
    encoder: Any
    classes: list[str]
    provenance: dict[str, Any]


def zero_shot_embeddings(encoder, classes: Sequence[str], options: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Unit class embeddings (n_labels, D) from the zero-shot study's prompts (``templates``, ``label_text``)."""
    from vlmprobe.models.prompts import DEFAULT_TEMPLATES, class_text_embeddings, render_prompts

    templates = options.get("templates") or DEFAULT_TEMPLATES
    prompts = render_prompts(list(classes), templates, options.get("label_text"), where="the zero-shot templates")

    def encode(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            return encoder.encode_text(texts).float().cpu().numpy()

    return class_text_embeddings(encode, prompts), {"prompts": dict(zip(classes, prompts, strict=True)), "score": "cosine similarity"}


def build_setting(
    setting: str,
    model_id: str,
    spec: dict[str, Any],
    classes: Sequence[str],
    device: str,
    head_path: str | None = None,
    encoder_path: str | None = None,
    zero_shot: dict[str, Any] | None = None,
) -> SettingModel:
    """Load the model of ``setting`` and wrap it as a scorer.

    zs: the configured encoder and its text tower over ``classes`` (the manifest's labels);
    lp: the configured encoder + the probe head at ``head_path``; ft: the fine-tuned
    encoder at ``encoder_path`` + its head at ``head_path``. Heads carry their own class order.
    """
    from vlmprobe.formats.heads import load_head
    from vlmprobe.models import load_encoder

    if setting not in SETTINGS:
        raise VlmprobeError(f"Unknown heatmap setting {setting!r}.", f"use one of {list(SETTINGS)}.")
    if setting == "zs":
        encoder = load_encoder(model_id, spec, device)
        if not encoder.has_text_tower:
            raise VlmprobeError(
                f"Model {model_id!r} ({encoder.family}) has no text tower, so it has no zero-shot setting.",
                "leave zs out of `heatmaps: settings` for it (the workflow skips non-open_clip models).",
            )
        embeddings, info = zero_shot_embeddings(encoder, classes, zero_shot or {})
        return SettingModel(ZeroShotScorer(encoder.image_module, embeddings).to(device), encoder, list(classes), info)
    if head_path is None:
        raise VlmprobeError(f"Setting {setting!r} of model {model_id!r} needs a head file.", "give the probe's / fine-tuned model's head.safetensors.")
    head = load_head(head_path)
    if setting == "lp":
        encoder = load_encoder(model_id, spec, device)
        info = {"head": str(head_path), "source": head.source}
    else:
        from vlmprobe.models.finetuned import load_finetuned

        if encoder_path is None:
            raise VlmprobeError(f"Setting ft of model {model_id!r} needs the fine-tuned encoder file.", "give encoder.safetensors of its finetune job.")
        tuned = load_finetuned(encoder_path, head_path, device)
        encoder = tuned.encoder
        info = {"head": str(head_path), "encoder": str(encoder_path), "spec_used": tuned.metadata.get("spec")}
    if head.weight.shape[1] != encoder.embed_dim:
        raise VlmprobeError(
            f"Head {str(head_path)!r} expects {head.weight.shape[1]}-D embeddings but model {model_id!r} gives {encoder.embed_dim}-D.",
            "re-run the job that wrote the head (it was made for another model).",
        )
    return SettingModel(HeadScorer(encoder.image_module, linear_layer(head.weight, head.bias)).to(device), encoder, list(head.classes), info)


def _label_indices(labels: Sequence[str], classes: Sequence[str]) -> list[int]:
    index = {name: i for i, name in enumerate(classes)}
    return [index[name] for name in labels if name in index]


def write_maps(path, maps: np.ndarray, index: dict[str, Sequence[Any]], provenance: dict[str, Any]) -> None:
    """Raw maps (N, h, w) at the model's input resolution, float16, with one index entry per map."""
    import json

    from vlmprobe.io import atomic_path

    arrays = {"maps": np.asarray(maps, dtype=np.float16)}
    for key, values in index.items():
        values = list(values)
        arrays[key] = np.asarray(values, dtype=str) if values and isinstance(values[0], str) else np.asarray(values)
    arrays["provenance"] = np.asarray(json.dumps(provenance, sort_keys=True, default=str))
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)


def read_maps(path) -> dict[str, Any]:
    """The arrays of a ``maps.npz`` (maps, sample_id, label, target_kind, score, image_height,
    image_width) and its provenance dict. :func:`map_at_image_size` gives map ``i`` at its image's size."""
    import json

    with np.load(path, allow_pickle=False) as archive:
        data = {key: archive[key] for key in archive.files}
    data["provenance"] = json.loads(str(data["provenance"]))
    return data


def map_at_image_size(data: dict[str, Any], i: int) -> np.ndarray:
    return resize_map(data["maps"][i].astype(np.float32), (int(data["image_height"][i]), int(data["image_width"][i])))


def run_heatmaps(
    manifest_path,
    dataset: str,
    model_id: str,
    spec: dict[str, Any],
    setting: str,
    out_dir,
    scores_path,
    *,
    head_path: str | None = None,
    encoder_path: str | None = None,
    zero_shot: dict[str, Any] | None = None,
    method: str = "gradcam",
    layer_override: str | None = None,
    max_annotated: int = 24,
    n_random: int = 8,
    seed: int = 0,
    threshold: float = 0.5,
    threshold_rule: str = "relative_max",
    rows_per_page: int = 8,
    device: str = "auto",
    batch_size: int = 16,
):
    """One job: maps for the selected images of ``dataset`` under ``model_id`` in ``setting``.

    Writes ``out_dir/maps.npz`` (raw maps, :func:`read_maps`), ``out_dir/overlays_NN.png`` (grids of
    ``rows_per_page`` images) and ``scores_path`` (one row per map: pointing game, IoU, energy
    fraction and chance where the image has a box or mask for the label). Returns the scores table.
    """
    import json
    import time
    from pathlib import Path

    import polars as pl

    from vlmprobe.formats.manifest import read_manifest
    from vlmprobe.heatmaps import figures as cam_figures
    from vlmprobe.heatmaps import scores as cam_scores
    from vlmprobe.images import load_image
    from vlmprobe.io import save_figure, write_parquet

    started = time.perf_counter()
    device = resolve_device(device)
    table, manifest_info = read_manifest(manifest_path)
    rows = select_images(table, max_annotated, n_random, seed)
    setting_model = build_setting(setting, model_id, spec, manifest_info.get("classes") or [], device, head_path, encoder_path, zero_shot)
    classes = setting_model.classes
    layer = target_layer(setting_model.encoder, layer_override)
    geometry = input_geometry(setting_model.encoder)
    log.info(
        "%s / %s / %s: %d images (<= %d annotated + %d random test images), method %s on %s (%s)",
        dataset, model_id, setting, len(rows), max_annotated, n_random, method, layer.name, layer.rule,
    )

    sample_ids = table.column("sample_id").to_pylist()
    paths = table.column("path").to_pylist()
    labels = table.column("labels").to_pylist()
    boxes = table.column("boxes").to_pylist() if "boxes" in table.column_names else [[] for _ in sample_ids]
    masks = table.column("annotation_path").to_pylist() if "annotation_path" in table.column_names else [None] * len(sample_ids)
    images = [np.asarray(load_image(paths[i])) for i in rows]
    inputs = torch.stack([to_input(_pil(image), geometry) for image in images]) if rows else torch.zeros((0, 3, *geometry.size))
    scores = scores_of(setting_model.scorer, inputs, batch_size, device)
    targets = choose_targets(scores, [_label_indices(labels[i], classes) for i in rows]) if rows else []
    flat = [(position, index, kind) for position, chosen in enumerate(targets) for index, kind in chosen]
    maps = compute_maps(
        setting_model.scorer, layer, inputs[[p for p, _, _ in flat]] if flat else inputs[:0], [t for _, t, _ in flat], method, batch_size, device
    )
    log.info("%d maps (%d images x their true labels + top false positive), %.1f s into the job", len(flat), len(rows), time.perf_counter() - started)

    records, image_rows = [], []
    for position, row in enumerate(rows):
        image = images[position]
        shape = image.shape[:2]
        panels = []
        for map_index, (p, label_index, kind) in enumerate(flat):
            if p != position:
                continue
            label = classes[label_index]
            cam = resize_map(maps[map_index], shape)
            region, source = cam_scores.label_region(label, shape, boxes[row], masks[row], labels[row])
            score = cam_scores.score_map(cam, region, threshold, threshold_rule) if region is not None else None
            records.append(
                {
                    "dataset": dataset, "model": model_id, "setting": setting, "method": method,
                    "sample_id": sample_ids[row], "label": label, "target_kind": kind,
                    "score": float(scores[position, label_index]), "map_index": map_index,
                    "has_region": region is not None, "region_source": source,
                    "area_fraction": score.area_fraction if score else None,
                    "pointing_game": score.pointing_game if score else None,
                    "iou": score.iou if score else None,
                    "energy_fraction": score.energy_fraction if score else None,
                    "flat": bool(cam.max() <= cam.min()),
                    "iou_chance": score.iou_chance if score else None,
                }
            )
            panels.append(
                cam_figures.MapPanel(
                    label, kind, float(scores[position, label_index]), cam,
                    [b for b in boxes[row] or [] if b["label"] == label],
                    score.pointing_game if score else None,
                )
            )
        image_rows.append(cam_figures.ImageRow(sample_ids[row], image, list(labels[row]), list(boxes[row] or []), panels))

    provenance = {
        "dataset": dataset, "model": model_id, "spec": spec, "setting": setting, "method": method,
        "target_layer": layer.name, "target_layer_rule": layer.rule, "reshape": repr(layer.reshape_transform),
        "input_size": list(geometry.size), "classes": classes, "seed": seed,
        "selection": {"max_annotated": max_annotated, "n_random": n_random, "sample_ids": [sample_ids[i] for i in rows]},
        "threshold": {"rule": threshold_rule, "value": threshold}, "setting_info": setting_model.provenance,
        "device": device, "seconds": round(time.perf_counter() - started, 2),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_maps(
        out_dir / "maps.npz",
        maps,
        {
            "sample_id": [sample_ids[rows[p]] for p, _, _ in flat], "label": [classes[t] for _, t, _ in flat],
            "target_kind": [k for _, _, k in flat], "score": [float(scores[p, t]) for p, t, _ in flat],
            "image_height": [images[p].shape[0] for p, _, _ in flat], "image_width": [images[p].shape[1] for p, _, _ in flat],
        },
        provenance,
    )
    title = f"{dataset} / {model_id} / {setting} ({method} on {layer.name})"
    for page, figure in enumerate(cam_figures.overlay_pages(image_rows, title, rows_per_page), start=1):
        save_figure(out_dir / f"overlays_{page:02d}.png", figure)
    frame = pl.DataFrame(records, schema=cam_scores.SCORE_SCHEMA)
    arrow = frame.to_arrow()
    arrow = arrow.replace_schema_metadata({b"vlmprobe": json.dumps(provenance, sort_keys=True, default=str)})
    write_parquet(scores_path, arrow)
    summary = cam_scores.summarise(frame, ["setting"])
    if summary.height:
        row = summary.row(0, named=True)
        log.info(
            "pointing game %.3f (chance %.3f), IoU %.3f, energy inside %.3f over %d scored maps",
            row["pointing_game"], row["chance"], row["iou"], row["energy_fraction"], row["n_maps"],
        )
    else:
        log.info("no selected image has a box or mask for its labels: nothing scored")
    return frame


def _pil(array: np.ndarray):
    from PIL import Image

    return Image.fromarray(array)




def write_settings_comparison(manifest_path, maps_dirs: dict[str, Any], out_path, dataset: str, model_id: str, n_rows: int = 6) -> int:
    """The paper's side-by-side figure: the same (image, true label) pairs in every setting that has maps.

    Rows are (image, label) pairs with an annotation that every given setting has a map for: one
    label per image first (manifest order), then the images' further labels, ``n_rows`` at most.
    Returns the number of rows drawn.
    """
    from pathlib import Path

    from vlmprobe.formats.manifest import read_manifest
    from vlmprobe.heatmaps import figures as cam_figures
    from vlmprobe.heatmaps import scores as cam_scores
    from vlmprobe.images import load_image
    from vlmprobe.io import save_figure

    settings = [s for s in SETTINGS if s in maps_dirs] + sorted(set(maps_dirs) - set(SETTINGS))
    data = {setting: read_maps(Path(maps_dirs[setting]) / "maps.npz") for setting in settings}
    table, _ = read_manifest(manifest_path)
    by_id = {row["sample_id"]: row for row in table.select(["sample_id", "path", "labels", "boxes", "annotation_path"]).to_pylist()}

    def true_maps(d):
        keys = zip(d["sample_id"].tolist(), d["label"].tolist(), d["target_kind"].tolist(), strict=True)
        return {(sample_id, label): i for i, (sample_id, label, kind) in enumerate(keys) if kind == "true"}

    indices = {setting: true_maps(data[setting]) for setting in settings}
    common = [key for key in indices[settings[0]] if all(key in indices[s] for s in settings)] if settings else []
    annotated = [(s, l) for s, l in common if s in by_id and (by_id[s]["boxes"] or by_id[s]["annotation_path"])]
    first_per_image, seen = [], set()
    for sample_id, label in annotated:
        if sample_id not in seen:
            first_per_image.append((sample_id, label))
            seen.add(sample_id)
    ordered = first_per_image + [pair for pair in annotated if pair not in first_per_image]
    rows = []
    for sample_id, label in ordered:
        if len(rows) >= n_rows:
            break
        record = by_id[sample_id]
        image = np.asarray(load_image(record["path"]))
        region, _ = cam_scores.label_region(label, image.shape[:2], record["boxes"], record["annotation_path"], record["labels"])
        if region is None:  # e.g. 'normal': annotated image, but nothing marks this label
            continue
        maps = {setting: map_at_image_size(data[setting], indices[setting][(sample_id, label)]) for setting in settings}
        hits = {setting: cam_scores.pointing_game(cam, region) for setting, cam in maps.items()}
        boxes = [box for box in record["boxes"] or [] if box["label"] == label]
        rows.append(cam_figures.ComparisonRow(sample_id, image, label, boxes, maps, hits))
    method = ", ".join(sorted({str(d["provenance"].get("method")) for d in data.values()}))
    figure = cam_figures.settings_comparison(rows, settings, f"{dataset} / {model_id}: the same images in each setting ({method})")
    save_figure(out_path, figure)
    return len(rows)
