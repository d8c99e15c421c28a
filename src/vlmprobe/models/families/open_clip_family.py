"""``open_clip``: any open_clip architecture with any weights source open_clip accepts.

``pretrained`` may be a tag (``openai``, ``laion2b_s34b_b88k``), a checkpoint file (``.pt``, ``.bin``,
``.safetensors``), or null for random initialisation; ``name`` may carry open_clip's own schemas
``hf-hub:org/repo`` (BiomedCLIP) and ``local-dir:/folder`` (``open_clip_config.json`` + weights, the
offline route). A checkpoint file alone would silently get open_clip's *default* preprocessing, so
for files the preprocessing must come from somewhere: ``preprocess: {mean, std, interpolation,
resize_mode}``, ``preprocess_like: <tag>``, or an ``open_clip_config.json`` beside the file.

The tiny architectures in ``open_clip_configs/`` (``vlmprobe-vit-tiny``, ``vlmprobe-rn-tiny``) are
registered with open_clip for tests and the default config: they use open_clip's built-in text
transformer and shipped BPE tokenizer, so nothing touches the network.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from vlmprobe.errors import VlmprobeError
from vlmprobe.models.base import (
    OFFLINE_FIX,
    Encoder,
    ModelFamily,
    describe_transform,
    register_family,
    unknown_name_error,
)

log = logging.getLogger(__name__)
CONFIG_DIR = Path(__file__).parents[1] / "open_clip_configs"
_registered = False


def _open_clip():
    global _registered
    import open_clip

    if not _registered:
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True
    return open_clip


def _source(spec: dict[str, Any]) -> tuple[str, str | None]:
    """(model_name, pretrained) as open_clip wants them; an ``hf-hub:`` pretrained moves into the name."""
    name = str(spec["name"])
    pretrained = spec.get("pretrained")
    if isinstance(pretrained, str) and pretrained.startswith(("hf-hub:", "local-dir:")):
        return pretrained, None
    return name, pretrained


def _file_preprocess(model_id: str, spec: dict[str, Any], checkpoint: Path) -> dict[str, Any]:
    open_clip = _open_clip()
    if spec.get("preprocess"):
        return dict(spec["preprocess"])
    if spec.get("preprocess_like"):
        cfg = open_clip.get_pretrained_cfg(spec["name"], spec["preprocess_like"])
        if not cfg:
            raise VlmprobeError(
                f"Model {model_id!r}: `preprocess_like: {spec['preprocess_like']}` is not a pretrained tag of {spec['name']!r}.",
                f"use one of {open_clip.list_pretrained_tags_by_model(spec['name'])}.",
            )
        return {key: cfg[key] for key in ("mean", "std", "interpolation", "resize_mode") if key in cfg}
    sidecar = checkpoint.parent / "open_clip_config.json"
    if sidecar.is_file():
        return dict(json.loads(sidecar.read_text()).get("preprocess_cfg", {}))
    raise VlmprobeError(
        f"Model {model_id!r}: checkpoint file {str(checkpoint)!r} says nothing about its preprocessing, and open_clip "
        "would silently use its defaults (wrong mean/std/resize for most models).",
        "add `preprocess_like: <the tag it was trained as, e.g. openai>` or "
        "`preprocess: {mean: [...], std: [...], interpolation: bicubic, resize_mode: shortest}` to the model, "
        "or put its open_clip_config.json beside the file.",
    )


def open_clip_checkpoint_filter(state: dict[str, Any], model) -> dict[str, Any]:
    """open_clip's own fixes from ``open_clip.load_checkpoint``, applied to a state dict vlmprobe read
    safely: third-party layouts (MobileCLIP), the old text-tower layout, scalar-vs-1-D logit scale and
    bias, stale ``position_ids``, and position embeddings resampled to the model's grid and context."""
    from open_clip.convert import convert_state_dict
    from open_clip.model import (
        convert_to_custom_text_state_dict,
        resize_pos_embed,
        resize_text_pos_embed,
    )

    state = convert_state_dict(model, state)
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    for name in ("logit_scale", "logit_bias"):
        own = getattr(model, name, None)
        if name in state and own is not None and own.ndim != state[name].ndim:
            state[name] = state[name].reshape(own.shape)
    if "logit_bias" not in state and getattr(model, "logit_bias", None) is not None and "logit_scale" in state:
        state["logit_bias"] = state["logit_scale"].new_zeros(model.logit_bias.shape)
    state.pop("text.transformer.embeddings.position_ids", None)  # transformers >= 4.31 dropped it; a kept buffer is refilled
    resize_pos_embed(state, model)
    resize_text_pos_embed(state, model)
    return state


def _create_arguments(model_id: str, spec: dict[str, Any]) -> tuple[str, str | None, Path | None, dict[str, Any]]:
    """(name, pretrained tag, checkpoint file, keyword arguments) for ``open_clip.create_model_and_transforms``."""
    open_clip = _open_clip()
    name, pretrained = _source(spec)
    checkpoint = None
    kwargs: dict[str, Any] = {}
    if spec.get("image_size"):
        kwargs["force_image_size"] = int(spec["image_size"])
    preprocess_override = spec.get("preprocess")
    if isinstance(pretrained, str) and pretrained not in open_clip.list_pretrained_tags_by_model(name):
        checkpoint = Path(pretrained)
        preprocess_override = _file_preprocess(model_id, spec, checkpoint)
        pretrained = None
    for key in ("mean", "std", "interpolation", "resize_mode"):
        if preprocess_override and preprocess_override.get(key) is not None:
            value = preprocess_override[key]
            kwargs[f"image_{key}"] = tuple(value) if isinstance(value, list) else value
    return name, pretrained, checkpoint, kwargs


def _preprocess_cfg(model_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The preprocessing ``open_clip.create_model`` settles on (``open_clip/factory.py``, create_model: defaults,
    then the source's ``preprocess_cfg`` or the tag's, the vision tower's image size, then the forced values),
    read from configs alone: no model is built and no weights are read."""
    from dataclasses import asdict

    from open_clip.transform import PreprocessCfg, merge_preprocess_dict, merge_preprocess_kwargs

    from vlmprobe.models.hub_registry import check_open_clip_hub

    open_clip = _open_clip()
    name, pretrained, _, kwargs = _create_arguments(model_id, spec)
    cfg = asdict(PreprocessCfg())
    if name.startswith("local-dir:"):
        source = json.loads((Path(name[len("local-dir:") :]) / "open_clip_config.json").read_text())
        model_cfg, cfg = source["model_cfg"], merge_preprocess_dict(cfg, source.get("preprocess_cfg", {}))
    elif name.startswith("hf-hub:"):
        source = check_open_clip_hub(model_id, name[len("hf-hub:") :])
        model_cfg, cfg = source["model_cfg"], merge_preprocess_dict(cfg, source.get("preprocess_cfg", {}))
    else:
        model_cfg = open_clip.get_model_config(name.replace("/", "-"))
        if pretrained:
            cfg = merge_preprocess_dict(cfg, open_clip.get_pretrained_cfg(name, pretrained) or {})
    cfg["size"] = kwargs.get("force_image_size", model_cfg["vision_cfg"].get("image_size", cfg["size"]))
    forced = merge_preprocess_kwargs(
        {}, mean=kwargs.get("image_mean"), std=kwargs.get("image_std"),
        interpolation=kwargs.get("image_interpolation"), resize_mode=kwargs.get("image_resize_mode"),
    )
    return merge_preprocess_dict(cfg, forced)


def _fitting_architectures(checkpoint, name: str) -> list[str]:
    from vlmprobe.models.checkpoints import architectures_fitting, close_names

    open_clip = _open_clip()
    return architectures_fitting(checkpoint, close_names(name, open_clip.list_models()), lambda n: (open_clip.create_model(n), ()))


@register_family
class OpenClipFamily(ModelFamily):
    name = "open_clip"
    has_text_tower = True
    trainable = True

    def check(self, model_id: str, spec: dict[str, Any]) -> None:
        open_clip = _open_clip()
        name, pretrained = _source(spec)
        if name.startswith("local-dir:"):
            folder = Path(name[len("local-dir:") :])
            if not (folder / "open_clip_config.json").is_file():
                raise VlmprobeError(
                    f"Model {model_id!r}: {str(folder)!r} has no open_clip_config.json.",
                    "pre-stage the model folder (open_clip_config.json + open_clip_model.safetensors) there.",
                )
            return
        if name.startswith("hf-hub:"):
            from vlmprobe.models.hub_registry import check_open_clip_hub

            check_open_clip_hub(model_id, name[len("hf-hub:") :])  # local HF cache or vendored record; see hub_registry
            return
        if name not in open_clip.list_models():
            raise unknown_name_error(
                "open_clip architecture", name, open_clip.list_models(), model_id,
                "use a name from open_clip.list_models(), an hf-hub:org/repo name, or local-dir:<folder>.",
            )
        if pretrained is None or pretrained is False:
            return
        pretrained = str(pretrained)
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained in tags:
            return
        path = Path(pretrained)
        if path.suffix or "/" in pretrained:
            if not path.is_file():
                from vlmprobe.models.checkpoints import missing_weights_file

                raise missing_weights_file(path, model_id, "to load an open_clip model folder (open_clip_config.json + weights) set `name: local-dir:<folder>` and `pretrained: null`")
            _file_preprocess(model_id, spec, path)
            return
        raise unknown_name_error(
            f"pretrained tag for {name}", pretrained, tags, model_id,
            f"use one of {tags}, a checkpoint file path, or null for random weights.",
        )

    def preprocess_without_weights(self, model_id: str, spec: dict[str, Any]) -> Any:
        from open_clip.transform import PreprocessCfg, image_transform_v2

        return image_transform_v2(PreprocessCfg(**_preprocess_cfg(model_id, spec)), is_train=False)

    def input_files(self, spec: dict[str, Any]) -> list[str]:
        """The weights, plus a ``local-dir:`` folder's ``open_clip_config.json`` (it defines the architecture)."""
        name, _ = _source(spec)
        config = [str(Path(name[len("local-dir:") :]) / "open_clip_config.json")] if name.startswith("local-dir:") else []
        return self.weight_files(spec) + config

    def weight_files(self, spec: dict[str, Any]) -> list[str]:
        """A checkpoint file, or the weights file open_clip will pick in a ``local-dir:`` folder."""
        name, _ = _source(spec)
        if not name.startswith("local-dir:"):
            return super().weight_files(spec)
        folder = Path(name[len("local-dir:") :])
        if not folder.is_dir():
            return []
        pick = getattr(_open_clip().factory, "_find_checkpoint_in_dir", None)  # private: fall back to every candidate
        if pick is not None:
            chosen = pick(folder)
            return [chosen] if chosen else []
        return [str(p) for p in sorted(folder.iterdir()) if p.suffix in {".safetensors", ".bin", ".pth"}]

    def cam_layer(self, encoder: Encoder) -> tuple[Any, Any, str]:
        """ViT: the last block's ``ln_1`` (tokens -> grid); ModifiedResNet: ``layer4[-1]``; timm tower: the timm rule."""
        from open_clip.modified_resnet import ModifiedResNet
        from open_clip.timm_model import TimmModel
        from open_clip.transformer import VisionTransformer

        from vlmprobe.models.cam_layers import TokenGrid, last_conv, timm_layer

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
            return timm_layer(visual.trunk, "visual.trunk.")
        return last_conv(visual), None, f"open_clip {type(visual).__name__}: last Conv2d"

    def load(self, model_id: str, spec: dict[str, Any], device: str = "cpu") -> Encoder:
        import torch

        from vlmprobe.models.checkpoints import load_checkpoint_into, sha256

        open_clip = _open_clip()
        name, pretrained, checkpoint, kwargs = _create_arguments(model_id, spec)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, **kwargs)
        except VlmprobeError:
            raise
        except Exception as error:  # noqa: BLE001 - hub/network/file failures all need the same advice
            raise VlmprobeError(
                f"Model {model_id!r}: open_clip could not create {name!r} with pretrained={pretrained!r} "
                f"({type(error).__name__}: {str(error)[:300]}).",
                OFFLINE_FIX,
            ) from error
        digest = fit = None
        if checkpoint is not None:
            fit = load_checkpoint_into(
                model, checkpoint, name,
                filter_fn=open_clip_checkpoint_filter,
                key=spec.get("checkpoint_key"),
                alternatives=lambda state: _fitting_architectures(state, name),
            ).as_metadata()
            digest = sha256(checkpoint)
        model.eval().to(device)
        tokenizer = open_clip.get_tokenizer(name)

        class ImageTower(torch.nn.Module):
            def __init__(self, clip_model):
                super().__init__()
                self.clip = clip_model

            def forward(self, images):
                return self.clip.encode_image(images)

        def encode_text(texts):
            tokens = tokenizer(list(texts)).to(next(model.parameters()).device)
            return model.encode_text(tokens)

        # JSON types (lists, not tuples) so the provenance reads back equal to what was written
        preprocess_cfg = json.loads(json.dumps(dict(getattr(model.visual, "preprocess_cfg", {}))))
        with torch.no_grad():
            size = preprocess_cfg.get("size", 224)
            size = size if isinstance(size, (tuple, list)) else (size, size)
            embed_dim = int(model.encode_image(torch.zeros(1, 3, *size, device=device)).shape[-1])
        return Encoder(
            model_id=model_id,
            family=self.name,
            spec=spec,
            image_module=ImageTower(model),
            preprocess=preprocess,
            preprocess_info={"open_clip_preprocess_cfg": preprocess_cfg, "transform": describe_transform(preprocess)},
            embed_dim=embed_dim,
            checkpoint_sha256=digest,
            checkpoint_fit=fit,
            text_encoder=encode_text,
            extras={"open_clip_model": model, "architecture": name},
        )
