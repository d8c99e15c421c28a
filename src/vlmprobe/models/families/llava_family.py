"""``llava``: the image side of a LLaVA-format checkpoint (LLaVA-1.5, LLaVA-Med v1.5, LLaVA-Med++), read from its shards.

A LLaVA checkpoint folder holds ``config.json``, ``model.safetensors.index.json`` and safetensors shards in which
the vision tower (``model.vision_tower.vision_tower.vision_model.*``, a CLIP ``CLIPVisionModel``) and the
multimodal projector (``model.mm_projector.*``) sit beside the language model. Only the shards the index names for
those keys are opened, and from them only those tensors are read: the language model is never read.
``config.json`` names (microsoft/LLaVA-Med llava/model/llava_arch.py:31-36, multimodal_encoder/clip_encoder.py:13-37,
multimodal_projector/builder.py:33-51): ``mm_vision_tower`` (the tower's architecture and image processor),
``mm_vision_select_layer`` (-2), ``mm_vision_select_feature`` (``patch``: class token dropped),
``mm_projector_type`` (``mlp2x_gelu``: Linear, GELU, Linear), ``image_aspect_ratio`` (``pad``) and, for
LLaVA-Llama-3 S2 models (LLaVA-Med++), ``s2`` / ``s2_scales``. Spec keys:

- ``name``: the hub repository (``microsoft/llava-med-v1.5-mistral-7b``), for the record;
- ``pretrained``: the downloaded repository folder (``huggingface-cli download <repo> --local-dir <folder>``);
- ``vision_tower``: a hub name or ``local-dir:<folder>`` for the tower's config and image processor, and its
  weights where the checkpoint lacks them (LLaVA-1.5's own releases do); default ``mm_vision_tower``;
- ``output``: ``projector_mean`` (default: the mean over the image tokens of the projector's outputs, what the
  language model reads; the only one of the three that LLaVA-Med's training changed, since the tower is frozen,
  clip_encoder.py:25), ``penultimate_mean`` (the mean of the selected layer's patch tokens: what the projector
  reads) or ``pooled`` (the tower's final layer-normed class token, what CLIP itself outputs).

Preprocessing as ``process_images`` with ``image_aspect_ratio: pad`` (llava/mm_utils.py:32-46): the image pasted
on a square of the processor's mean colour (``tuple(int(x * 255) for x in image_mean)``) at offset
``(long - short) // 2`` (LLaVA-Med draws it at random from ``[(long - short) // 2, (long - short) // 2 + 1]``,
mm_utils.py:14-29; haotian-liu/LLaVA uses the first, deterministic one, as here), then the CLIP image processor:
shortest side to 336 (bicubic), centre crop, [0, 1], OpenAI mean / std. With ``s2`` the processor works at the
largest scale (1008, UCSC-VLAA/MedTrinity-25M llava/model/multimodal_encoder/clip_encoder.py:119-124) and the tower
runs as ``s2wrapper.forward`` does (bfshi/scaling_on_scales s2wrapper/core.py:14-62): the image resized (bicubic)
to each scale, cut into 336-px tiles, each tile's patch tokens laid out as a grid and the tiles merged, each scale
area-pooled to the first scale's 24 x 24 grid, channels concatenated (3 x 1024 = 3072-D tokens).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

from vlmprobe.errors import VlmprobeError
from vlmprobe.models.base import Encoder, ModelFamily, describe_transform, register_family

OUTPUTS = ("projector_mean", "penultimate_mean", "pooled")
TOWER_PREFIX = "model.vision_tower.vision_tower.vision_model."
PROJECTOR_PREFIX = "model.mm_projector."
INDEX = "model.safetensors.index.json"


def _folder(model_id: str, spec: dict[str, Any]) -> Path:
    value = str(spec.get("pretrained") or "")
    folder = Path(value.removeprefix("local-dir:")).expanduser()
    if not value or not folder.is_dir():
        raise VlmprobeError(
            f"Model {model_id!r}: `pretrained: {value}` is not a downloaded LLaVA repository folder.",
            f"on a machine with internet `huggingface-cli download {spec.get('name', '<repo>')} --local-dir <folder>` "
            "(config.json, model.safetensors.index.json and the shards), copy it here and point `pretrained:` at it.",
        )
    return folder


def _json(model_id: str, path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise VlmprobeError(f"Model {model_id!r}: {str(path)!r} is missing or not JSON ({error}).", "download the repository folder completely.") from error


def llava_config(model_id: str, folder: Path) -> dict[str, Any]:
    config = _json(model_id, folder / "config.json")
    if not config.get("mm_vision_tower") and not config.get("vision_tower"):
        raise VlmprobeError(
            f"Model {model_id!r}: {str(folder / 'config.json')!r} names no `mm_vision_tower`: it is not a LLaVA-format checkpoint.",
            "point `pretrained:` at a LLaVA / LLaVA-Med / LLaVA-Med++ repository folder.",
        )
    return config


def image_shards(model_id: str, folder: Path) -> dict[str, list[str]]:
    """{shard file: [vision tower and projector keys in it]}, from the index (or the single ``model.safetensors``)."""
    if (folder / INDEX).is_file():
        weight_map = _json(model_id, folder / INDEX).get("weight_map") or {}
    elif (folder / "model.safetensors").is_file():
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
            weight_map = {key: "model.safetensors" for key in handle.keys()}
    else:
        binaries = sorted(p.name for p in folder.glob("pytorch_model*.bin"))
        raise VlmprobeError(
            f"Model {model_id!r}: {str(folder)!r} has neither {INDEX} nor model.safetensors{f' (it has {binaries[:3]})' if binaries else ''}.",
            "download the repository's safetensors files (LLaVA-Med v1.5 and LLaVA-Med++ publish them).",
        )
    shards: dict[str, list[str]] = {}
    for key, shard in weight_map.items():
        if key.startswith((TOWER_PREFIX, PROJECTOR_PREFIX)):
            shards.setdefault(shard, []).append(key)
    if not any(k.startswith(PROJECTOR_PREFIX) for keys in shards.values() for k in keys):
        raise VlmprobeError(
            f"Model {model_id!r}: the checkpoint in {str(folder)!r} has no {PROJECTOR_PREFIX}* weights: it is not a LLaVA-format checkpoint.",
            "point `pretrained:` at a LLaVA repository folder (its mm_projector is what makes it LLaVA).",
        )
    missing = sorted(shard for shard in shards if not (folder / shard).is_file())
    if missing:
        raise VlmprobeError(
            f"Model {model_id!r}: shard(s) {missing} of {str(folder)!r} hold the vision tower / projector but are not there.",
            f"download them (`huggingface-cli download <repo> {' '.join(missing)} --local-dir {folder}`); the other shards are never read.",
        )
    return shards


def _tower_source(model_id: str, spec: dict[str, Any], config: dict[str, Any]):
    """(what from_pretrained would load, CLIPVisionConfig, preprocessing dict) of the tower."""
    from vlmprobe.models.families.transformers_clip import preprocessing, resolve_model, vision_config

    name = str(spec.get("vision_tower") or config.get("mm_vision_tower") or config.get("vision_tower"))
    source, tower_config, known = resolve_model(model_id, {"name": name})
    return source, vision_config(model_id, tower_config), preprocessing(model_id, spec, known)


def _settings(model_id: str, spec: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    output = spec.get("output", "projector_mean")
    if output not in OUTPUTS:
        raise VlmprobeError(f"Model {model_id!r}: LLaVA `output: {output}` is not one of {list(OUTPUTS)}.", "use projector_mean (default), penultimate_mean or pooled.")
    projector = config.get("mm_projector_type", "linear")
    if projector not in ("linear", "identity") and not (projector.startswith("mlp") and projector.endswith("x_gelu")):
        raise VlmprobeError(f"Model {model_id!r}: unknown `mm_projector_type: {projector}` in config.json.", "linear, identity or mlp<N>x_gelu (multimodal_projector/builder.py).")
    feature = config.get("mm_vision_select_feature", "patch")
    if feature not in ("patch", "cls_patch"):
        raise VlmprobeError(f"Model {model_id!r}: unknown `mm_vision_select_feature: {feature}`.", "patch or cls_patch (clip_encoder.py:29-37).")
    scales = sorted(int(s) for s in str(config.get("s2_scales", "336,672,1008")).split(",")) if config.get("s2") else None
    return {"output": output, "projector": projector, "select_layer": int(config.get("mm_vision_select_layer", -2)),
            "select_feature": feature, "s2_scales": scales, "pad": config.get("image_aspect_ratio") == "pad"}


def _projector(kind: str, in_dim: int, out_dim: int):
    import torch

    if kind == "identity":
        return torch.nn.Identity()
    if kind == "linear":
        return torch.nn.Linear(in_dim, out_dim)
    depth = int(kind[len("mlp") : -len("x_gelu")])
    layers = [torch.nn.Linear(in_dim, out_dim)]
    for _ in range(1, depth):
        layers += [torch.nn.GELU(), torch.nn.Linear(out_dim, out_dim)]
    return torch.nn.Sequential(*layers)


def split_tiles(x, n: int):
    """s2wrapper's ``split_chessboard``: (B, C, nH, nW) -> (n*n*B, C, H, W), tile-major (row, column, batch)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, n, h // n, n, w // n).permute(2, 4, 0, 1, 3, 5)
    return x.reshape(n * n * b, c, h // n, w // n)


def merge_tiles(x, n: int):
    """s2wrapper's ``merge_chessboard``, the inverse of :func:`split_tiles`."""
    bb, c, h, w = x.shape
    b = bb // (n * n)
    return x.reshape(n, n, b, c, h, w).permute(2, 3, 0, 4, 1, 5).reshape(b, c, n * h, n * w)


@functools.cache
def _tower_class():
    import torch
    import torch.nn.functional as F

    class LlavaImage(torch.nn.Module):
        """LLaVA's ``encode_images`` (vision tower, feature select, S2 when configured, projector) -> ``output``."""

        def __init__(self, tower, projector, settings: dict[str, Any]):
            super().__init__()
            self.vision_tower, self.projector, self.settings = tower, projector, settings

        def select(self, images):
            hidden = self.vision_tower(pixel_values=images, output_hidden_states=True).hidden_states[self.settings["select_layer"]]
            return hidden[:, 1:] if self.settings["select_feature"] == "patch" else hidden

        def features(self, images):
            """The tokens LLaVA hands the projector: (B, N, C), or S2's (B, N, C * scales)."""
            scales = self.settings["s2_scales"]
            if not scales:
                return self.select(images)
            grids = []
            for size in scales:
                n = math.ceil(size / scales[0])
                x = F.interpolate(images.to(torch.float32), size=size, mode="bicubic").to(images.dtype)
                tokens = self.select(split_tiles(x, n))
                side = int(tokens.shape[1] ** 0.5)
                grids.append(merge_tiles(tokens.transpose(1, 2).reshape(tokens.shape[0], -1, side, side), n))
            size = grids[0].shape[-2]
            merged = torch.cat([F.interpolate(g.to(torch.float32), size=size, mode="area").to(g.dtype) for g in grids], dim=1)
            return merged.flatten(2).transpose(1, 2)

        def forward(self, images):
            output = self.settings["output"]
            if output == "pooled":
                scales = self.settings["s2_scales"]
                if scales:  # the whole image at the first scale, as S2's first scale sees it
                    images = F.interpolate(images.to(torch.float32), size=scales[0], mode="bicubic").to(images.dtype)
                return self.vision_tower(pixel_values=images).pooler_output
            features = self.features(images)
            return (features if output == "penultimate_mean" else self.projector(features)).mean(dim=1)

    return LlavaImage


class PadToSquare:
    """LLaVA's ``expand2square`` at its deterministic offset ``(long - short) // 2``, on the mean colour."""

    def __init__(self, mean: tuple[float, ...]):
        self.mean = tuple(float(x) for x in mean)
        self.fill = tuple(int(x * 255) for x in mean)

    def geometry_step(self) -> dict[str, Any]:
        """This step as data for the pixel cache (:mod:`vlmprobe.models.pixel_split` rebuilds ``PadToSquare(**arguments)``);
        a fill of unequal channels keeps a gray image's channels from staying equal."""
        return {"arguments": {"mean": list(self.mean)}, "channel_symmetric": len(set(self.fill)) == 1}

    def __call__(self, image):
        from PIL import Image

        width, height = image.size
        if width == height:
            return image
        side = max(width, height)
        fill = int(sum(self.fill) / len(self.fill)) if image.mode == "L" else self.fill
        square = Image.new(image.mode, (side, side), fill)
        square.paste(image, ((side - width) // 2, 0) if height > width else (0, (side - height) // 2))
        return square

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fill={self.fill}, offset=(long - short) // 2)"


def _transform(settings: dict[str, Any], cfg: dict[str, Any]):
    """LLaVA's image processing: the mean-colour square (``image_aspect_ratio: pad``), CLIP's resize and crop
    (at the largest S2 scale where S2 is on), [0, 1], normalise."""
    from torchvision import transforms

    size = max(settings["s2_scales"]) if settings["s2_scales"] else int(cfg["crop_size"])
    resize = max(settings["s2_scales"]) if settings["s2_scales"] else int(cfg["shortest_edge"])
    steps = [PadToSquare(tuple(cfg["mean"]))] if settings["pad"] else []
    steps += [
        transforms.Resize(resize, interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
        transforms.CenterCrop(size),
        transforms.ToTensor(),
        transforms.Normalize(list(cfg["mean"]), list(cfg["std"])),
    ]
    return transforms.Compose(steps)


def _read_image_weights(model_id: str, folder: Path, shards: dict[str, list[str]]) -> dict[str, Any]:
    from safetensors import safe_open

    from vlmprobe.models.checkpoints import unreadable_checkpoint

    tensors = {}
    for shard, keys in shards.items():
        try:
            with safe_open(str(folder / shard), framework="pt") as handle:
                for key in keys:
                    tensors[key] = handle.get_tensor(key)
        except Exception as error:  # noqa: BLE001 - any failure of a bad file gets the same clear message
            raise unreadable_checkpoint(folder / shard, error) from error
    return tensors


def _fill(model_id: str, module, tensors: dict[str, Any], prefix: str, what: str) -> dict[str, int]:
    """Load ``tensors`` (keys under ``prefix``) into ``module``: every learned weight there, shapes equal; returns casts."""
    own = module.state_dict()
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing = sorted(k for k, v in own.items() if k not in state and v.dtype.is_floating_point)
    mismatched = [f"{k}: {list(state[k].shape)} vs {list(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
    unexpected = sorted(k for k, v in state.items() if k not in own and v.dtype.is_floating_point)
    if missing or mismatched or unexpected:
        raise VlmprobeError(
            f"Model {model_id!r}: the checkpoint's {what} ({prefix}*) does not fit the architecture "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}, shapes {mismatched[:3]}).",
            "check `vision_tower:` (the tower's config must be the one the checkpoint was trained with) and config.json's mm_* entries.",
        )
    casts: dict[str, int] = {}
    loaded = {}
    for key, value in state.items():
        if key in own:
            if value.dtype != own[key].dtype:
                casts[str(value.dtype).removeprefix("torch.")] = casts.get(str(value.dtype).removeprefix("torch."), 0) + 1
            loaded[key] = value.to(own[key].dtype)
    module.load_state_dict(loaded, strict=False)
    return casts


@register_family
class LlavaFamily(ModelFamily):
    name = "llava"

    def check(self, model_id: str, spec: dict[str, Any]) -> None:
        folder = _folder(model_id, spec)
        config = llava_config(model_id, folder)
        _settings(model_id, spec, config)
        shards = image_shards(model_id, folder)
        has_tower = any(k.startswith(TOWER_PREFIX) for keys in shards.values() for k in keys)
        _tower_source(model_id, spec, config)  # the tower's config resolves offline (cache, local-dir or vendored record)
        if not has_tower and not spec.get("vision_tower"):
            from vlmprobe.models.hub_registry import cached_config

            name = str(config.get("mm_vision_tower"))
            if not name.startswith("local-dir:") and cached_config(name, "config.json") is None:
                raise VlmprobeError(
                    f"Model {model_id!r}: the checkpoint holds no vision tower weights and {name!r} is not in the local Hugging Face cache.",
                    f"`huggingface-cli download {name}` on a machine with internet, or set `vision_tower: local-dir:<folder>`.",
                )

    def input_files(self, spec: dict[str, Any]) -> list[str]:
        """config.json, the index and the shards holding the image side (when the folder is there to ask)."""
        folder = Path(str(spec.get("pretrained") or "").removeprefix("local-dir:"))
        files = [folder / "config.json"]
        try:
            files += [folder / INDEX] if (folder / INDEX).is_file() else []
            files += [folder / shard for shard in image_shards("", folder)]
        except VlmprobeError:
            pass  # the check names what is wrong; the plan just lists what it can
        from vlmprobe.models.layouts import existing

        return existing(files)

    def weight_files(self, spec: dict[str, Any]) -> list[str]:
        return []  # shards are opened by key (safetensors headers) in check(), never as whole files

    def preprocess_without_weights(self, model_id: str, spec: dict[str, Any]) -> Any:
        """From the folder's config.json and the tower's processor settings alone (no shard is read)."""
        config = llava_config(model_id, _folder(model_id, spec))
        return _transform(_settings(model_id, spec, config), _tower_source(model_id, spec, config)[2])

    def load(self, model_id: str, spec: dict[str, Any], device: str = "cpu") -> Encoder:
        import torch
        from transformers import CLIPVisionModel

        folder = _folder(model_id, spec)
        config = llava_config(model_id, folder)
        settings = _settings(model_id, spec, config)
        shards = image_shards(model_id, folder)
        source, tower_config, cfg = _tower_source(model_id, spec, config)
        tensors = _read_image_weights(model_id, folder, shards)
        fit: dict[str, Any] = {"shards_read": sorted(shards), "tensors_read": len(tensors)}
        if any(k.startswith(TOWER_PREFIX) for k in tensors):
            tower = CLIPVisionModel(tower_config)
            fit["vision_tower_from"] = f"checkpoint ({TOWER_PREFIX}*)"
            # transformers 4 keeps the tower under `vision_model.` inside CLIPVisionModel, transformers 5 does not
            wrapped = any(key.startswith("vision_model.") for key in tower.state_dict())
            prefix = TOWER_PREFIX.removesuffix("vision_model.") if wrapped else TOWER_PREFIX
            fit["cast_from"] = _fill(model_id, tower, tensors, prefix, "vision tower")
        else:
            try:
                tower = CLIPVisionModel.from_pretrained(source, config=tower_config)
            except Exception as error:  # noqa: BLE001 - missing cache, bad folder, size mismatch: same advice
                raise VlmprobeError(f"Model {model_id!r}: the vision tower {source!r} could not be loaded ({type(error).__name__}: {str(error)[:200]}).",
                                    "stage the tower's repository (`vision_tower: local-dir:<folder>` or the Hugging Face cache).") from error
            fit["vision_tower_from"] = f"vision_tower: {source}"
        hidden = tower_config.hidden_size * (len(settings["s2_scales"]) if settings["s2_scales"] else 1)
        projector = _projector(settings["projector"], int(config.get("mm_hidden_size", hidden)), int(config.get("hidden_size", hidden)))
        fit["projector_cast_from"] = _fill(model_id, projector, tensors, PROJECTOR_PREFIX, "multimodal projector")
        module = _tower_class()(tower.float(), projector.float(), settings).eval().to(device)

        size = max(settings["s2_scales"]) if settings["s2_scales"] else int(cfg["crop_size"])
        preprocess = _transform(settings, cfg)
        with torch.no_grad():
            embed_dim = int(module(torch.zeros(1, 3, size, size, device=device)).shape[-1])
        return Encoder(
            model_id=model_id,
            family=self.name,
            spec=spec,
            image_module=module,
            preprocess=preprocess,
            preprocess_info={"transform": describe_transform(preprocess), **{k: v for k, v in settings.items()}},
            embed_dim=embed_dim,
            checkpoint_fit=fit,
            extras={"architecture": f"LLaVA image side: {source} + {settings['projector']}", "transformers_model": tower},
        )

    def cam_layer(self, encoder: Encoder) -> tuple[Any, Any, str]:
        from vlmprobe.models.cam_layers import TokenGrid

        module = encoder.image_module
        settings = module.settings
        if settings["s2_scales"] and settings["output"] != "pooled":
            raise VlmprobeError(
                f"Model {encoder.model_id!r}: with S2 the tower runs on tiles at {len(settings['s2_scales'])} scales, so no one layer output is the image's feature map.",
                "map it with `output: pooled` (one pass at the first scale), or leave it out of `heatmaps: models`.",
            )
        # the input norm of the layer whose output the features are (hidden_states[select_layer]; the last one for pooled)
        select = settings["select_layer"]  # hidden_states[k] is the output of layers[k - 1] (k >= 1), layers[k] (k < 0)
        index = -1 if settings["output"] == "pooled" else (select if select < 0 else select - 1)
        tower = module.vision_tower
        layers = getattr(tower, "vision_model", tower).encoder.layers  # transformers 4 wraps the tower in `vision_model`
        return layers[index].layer_norm1, TokenGrid(1), f"llava: CLIP tower encoder.layers[{index}].layer_norm1"
