"""``transformers_clip``: the vision tower of a Hugging Face ``transformers`` CLIP model, by repository name.

This is how the poster's LLaVA and LLM2CLIP rows run: LLaVA-1.5's image encoder is
``openai/clip-vit-large-patch14-336`` (kept frozen in LLaVA's training), LLM2CLIP's is the CLIP
ViT-L/14-336 tower of ``microsoft/LLM2CLIP-Openai-L-14-336`` (its full model needs the authors'
remote code; its vision tower is a standard ``CLIPVisionModel``). Spec keys:

- ``name``: a hub repository id (``org/repo``) or ``local-dir:<folder>`` holding ``config.json``,
  the weights and (optionally) ``preprocessor_config.json``: the offline route;
- ``output``: ``pooled`` (default: the tower's final-layer-normed class token, what the vision
  tower itself outputs), ``projected`` (CLIP's image embedding, the pooled token through
  ``visual_projection``, as open_clip's ``encode_image``) or ``penultimate_mean`` (mean of the
  patch tokens of the second-to-last layer: the features LLaVA's projector reads);
- ``revision``: a hub revision (commit) to pin; ``preprocess``: ``{shortest_edge, crop_size, mean,
  std, resample}`` to override the model's own.

The offline ``check`` resolves the name in the local Hugging Face cache or in vlmprobe's vendored
record of known repositories (:mod:`vlmprobe.models.hub_registry`) and builds its ``CLIPVisionConfig``. The
architecture is always passed to ``from_pretrained`` explicitly, and loading refuses a checkpoint
that leaves any weight of the tower missing or mismatched (transformers would otherwise initialise
it randomly and the embeddings would be noise with a warning in a log nobody reads).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from vlmprobe.errors import VlmprobeError
from vlmprobe.models.base import (
    OFFLINE_FIX,
    Encoder,
    ModelFamily,
    describe_transform,
    register_family,
)

OUTPUTS = ("pooled", "projected", "penultimate_mean")
RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic", "nearest": "nearest", "bilinear": "bilinear", "bicubic": "bicubic"}


def _local_dir(name: str) -> Path | None:
    return Path(name[len("local-dir:") :]).expanduser() if name.startswith("local-dir:") else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _preprocess_from_processor(config: dict[str, Any]) -> dict[str, Any]:
    """A ``preprocessor_config.json`` (CLIPImageProcessor) -> our preprocess dict."""
    size = config.get("size", 224)
    crop = config.get("crop_size", size)
    return {
        "shortest_edge": size.get("shortest_edge", size.get("height")) if isinstance(size, dict) else size,
        "crop_size": crop.get("height") if isinstance(crop, dict) else crop,
        "mean": config.get("image_mean", [0.48145466, 0.4578275, 0.40821073]),
        "std": config.get("image_std", [0.26862954, 0.26130258, 0.27577711]),
        "resample": config.get("resample", 3),
    }


def resolve_model(model_id: str, spec: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """(what ``from_pretrained`` loads, the architecture config, the preprocessing or None if unknown)."""
    from vlmprobe.models import hub_registry

    name = str(spec.get("name", ""))
    folder = _local_dir(name)
    if folder is not None:
        config = _read_json(folder / "config.json")
        if config is None:
            raise VlmprobeError(
                f"Model {model_id!r}: {str(folder)!r} has no readable config.json.",
                "pre-stage the model folder there (e.g. `huggingface-cli download <repo> --local-dir <folder>`).",
            )
        processor = _read_json(folder / "preprocessor_config.json")
        return str(folder), config, _preprocess_from_processor(processor) if processor else None
    config, _ = hub_registry.resolve(model_id, name, "transformers", "config.json")
    processor = hub_registry.cached_config(name, "preprocessor_config.json")
    if processor:
        return name, config, _preprocess_from_processor(processor)
    entry = hub_registry.known_repo(name)
    return name, config, dict(entry["preprocess"]) if entry and entry.get("preprocess") else None


def vision_config(model_id: str, config: dict[str, Any]):
    from transformers import CLIPVisionConfig

    model_type = config.get("model_type")
    if model_type == "clip":
        values = dict(config.get("vision_config") or {})
    elif model_type == "clip_vision_model":
        values = dict(config)
    else:
        raise VlmprobeError(
            f"Model {model_id!r}: its config has model_type {model_type!r}, not a CLIP model ('clip' or 'clip_vision_model').",
            "use this family for CLIP vision towers only; other architectures need their own family file.",
        )
    values.pop("model_type", None)
    try:
        return CLIPVisionConfig(**values)
    except (TypeError, ValueError) as error:
        raise VlmprobeError(f"Model {model_id!r}: its vision config cannot be built ({error}).", "check the config.json.") from error


def preprocessing(model_id: str, spec: dict[str, Any], known: dict[str, Any] | None) -> dict[str, Any]:
    chosen = dict(spec["preprocess"]) if spec.get("preprocess") else known
    if not chosen:
        raise VlmprobeError(
            f"Model {model_id!r}: its preprocessing is unknown (no preprocessor_config.json and no record).",
            "add `preprocess: {shortest_edge: 336, crop_size: 336, mean: [...], std: [...], resample: bicubic}` to the model.",
        )
    missing = [key for key in ("shortest_edge", "crop_size", "mean", "std") if key not in chosen]
    if missing or RESAMPLE.get(chosen.get("resample", 3)) is None:
        raise VlmprobeError(f"Model {model_id!r}: `preprocess` lacks {missing or ['a known resample']}.", "give shortest_edge, crop_size, mean, std and resample (bicubic/bilinear/nearest).")
    return chosen


def clip_processor_transform(cfg: dict[str, Any]):
    """CLIPImageProcessor's steps as torchvision transforms: shortest side to size (aspect kept), centre crop, [0, 1], normalise."""
    from torchvision import transforms

    interpolation = getattr(transforms.InterpolationMode, RESAMPLE[cfg.get("resample", 3)].upper())
    return transforms.Compose(
        [
            transforms.Resize(int(cfg["shortest_edge"]), interpolation=interpolation, antialias=True),
            transforms.CenterCrop(int(cfg["crop_size"])),
            transforms.ToTensor(),
            transforms.Normalize(list(cfg["mean"]), list(cfg["std"])),
        ]
    )


@register_family
class TransformersClipFamily(ModelFamily):
    name = "transformers_clip"

    def preprocess_without_weights(self, model_id: str, spec: dict[str, Any]) -> Any:
        _, _, known = resolve_model(model_id, spec)
        return clip_processor_transform(preprocessing(model_id, spec, known))

    def check(self, model_id: str, spec: dict[str, Any]) -> None:
        output = spec.get("output", "pooled")
        if output not in OUTPUTS:
            raise VlmprobeError(f"Model {model_id!r}: `output: {output}` is not one of {list(OUTPUTS)}.", "fix `output`.")
        _, config, known = resolve_model(model_id, spec)
        built = vision_config(model_id, config)
        if output == "projected" and not getattr(built, "projection_dim", None):
            raise VlmprobeError(f"Model {model_id!r}: `output: projected` but its config has no projection_dim.", "use `output: pooled`.")
        preprocessing(model_id, spec, known)

    def load(self, model_id: str, spec: dict[str, Any], device: str = "cpu") -> Encoder:
        import torch
        from transformers import CLIPVisionModel, CLIPVisionModelWithProjection

        output = spec.get("output", "pooled")
        source, config, known = resolve_model(model_id, spec)
        built = vision_config(model_id, config)
        cfg = preprocessing(model_id, spec, known)
        cls = CLIPVisionModelWithProjection if output == "projected" else CLIPVisionModel
        try:
            model, info = cls.from_pretrained(source, config=built, revision=spec.get("revision"), output_loading_info=True)
        except Exception as error:  # noqa: BLE001 - missing cache, gated repo, size mismatch: same advice
            raise VlmprobeError(
                f"Model {model_id!r}: transformers could not load {cls.__name__} from {source!r} ({type(error).__name__}: {str(error)[:300]}).",
                OFFLINE_FIX,
            ) from error
        missing = sorted(info.get("missing_keys", []))
        mismatched = sorted(str(key) for key in info.get("mismatched_keys", []))
        if missing or mismatched:
            raise VlmprobeError(
                f"Model {model_id!r}: the checkpoint of {source!r} does not fill the CLIP vision tower "
                f"(missing {missing[:4]}, mismatched {mismatched[:4]}); its embeddings would be partly random.",
                "check `name` (is it a CLIP model?) and `output` (`projected` needs a visual_projection in the checkpoint).",
            )
        model.eval().to(device)
        preprocess = clip_processor_transform(cfg)
        tower = VisionTower(model, output)
        with torch.no_grad():
            size = int(cfg["crop_size"])
            embed_dim = int(tower(torch.zeros(1, 3, size, size, device=device)).shape[-1])
        return Encoder(
            model_id=model_id,
            family=self.name,
            spec=spec,
            image_module=tower,
            preprocess=preprocess,
            preprocess_info={"processor": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}, "output": output, "transform": describe_transform(preprocess)},
            embed_dim=embed_dim,
            extras={"architecture": source, "transformers_model": model},
        )


@functools.cache
def _vision_tower_class():
    # defined on first use so that registering the family (every DAG build does) does not import torch
    import torch

    class _VisionTower(torch.nn.Module):
        """Pixel batch -> one vector per image, as ``output`` says."""

        def __init__(self, model, output: str):
            super().__init__()
            self.vision = model
            self.output = output

        def forward(self, pixel_values):
            if self.output == "projected":
                return self.vision(pixel_values=pixel_values).image_embeds
            if self.output == "pooled":
                return self.vision(pixel_values=pixel_values).pooler_output
            hidden = self.vision(pixel_values=pixel_values, output_hidden_states=True).hidden_states[-2]
            return hidden[:, 1:].mean(dim=1)  # patch tokens, class token left out, as LLaVA's select_feature="patch"

    return _VisionTower


def VisionTower(model, output: str):  # noqa: N802 - a factory that reads like the class it builds
    return _vision_tower_class()(model, output)
