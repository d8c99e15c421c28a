"""``timm``: any timm image model as a feature extractor (classifier removed, pooled features).

``pretrained``: true (timm's default weights for the name, downloaded on first use), false/null
(random init), or a checkpoint file. ``name`` may be ``hf-hub:org/repo`` (e.g. ``hf-hub:MahmoodLab/UNI``).
Preprocessing is timm's own data config for the model (``resolve_data_config``); ``image_size``
overrides the input size and ``preprocess: {mean, std, interpolation, crop_pct, crop_mode}`` the rest
(for a checkpoint trained with another normalisation); ``kwargs`` go to ``timm.create_model``.
A checkpoint file is fitted by :func:`vlmprobe.models.checkpoints.load_checkpoint_into`, with the
architecture module's own ``checkpoint_filter_fn`` (timm's remapping of original releases).
"""

from __future__ import annotations

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


def _head_prefixes(model) -> tuple[str, ...]:
    """The classifier's key prefixes (timm's ``pretrained_cfg['classifier']``): a checkpoint's head of any size is dropped."""
    head = model.pretrained_cfg.get("classifier", "head")
    return tuple(f"{h}." for h in ((head,) if isinstance(head, str) else head))


def _checkpoint_filter(model):
    """The architecture module's own ``checkpoint_filter_fn``: timm's remapping of original releases
    (JAX/DeiT/OpenAI key names, position-embedding resampling), the one timm applies to its own weights."""
    import sys

    return getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)


def _fitting_architectures(checkpoint, name: str, kwargs: dict[str, Any]) -> list[str]:
    import timm

    from vlmprobe.models.checkpoints import architectures_fitting, close_names

    def build(candidate: str):
        model = timm.create_model(candidate, pretrained=False, num_classes=0, **kwargs)
        return model, _head_prefixes(model)

    return architectures_fitting(checkpoint, close_names(name, timm.list_models()), build)


#: ``preprocess:`` keys passed to timm's ``resolve_data_config``: a converted checkpoint file may have
#: been trained with another normalisation than timm's default for the architecture.
PREPROCESS_KEYS = frozenset({"mean", "std", "interpolation", "crop_pct", "crop_mode"})


def _overrides(spec: dict[str, Any]) -> dict[str, Any]:
    """``image_size`` and ``preprocess:`` as overrides of timm's data config (keys vetted by ``check``)."""
    overrides: dict[str, Any] = {"input_size": (3, int(spec["image_size"]), int(spec["image_size"]))} if spec.get("image_size") else {}
    for key, value in dict(spec.get("preprocess") or {}).items():
        overrides[key] = tuple(value) if isinstance(value, list) else value
    return overrides


def _pretrained_cfg(model_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The ``pretrained_cfg`` ``timm.create_model`` gives the model, without creating it: the registry's for a
    name (its default tag's for an untagged one), a hub repository's own (read offline) over timm's defaults."""
    from timm.models import get_pretrained_cfg
    from timm.models._pretrained import PretrainedCfg

    from vlmprobe.models.hub_registry import check_timm_hub, strip_hub_prefix

    repo = strip_hub_prefix(str(spec["name"]))
    if repo is not None:
        return PretrainedCfg(**dict(check_timm_hub(model_id, repo).get("pretrained_cfg") or {})).to_dict()
    cfg = get_pretrained_cfg(str(spec["name"]), allow_unregistered=False)
    if cfg is None:
        raise VlmprobeError(f"Model {model_id!r}: timm has no pretrained_cfg for {spec['name']!r}.", "check `name`.")
    return cfg.to_dict()


@register_family
class TimmFamily(ModelFamily):
    name = "timm"
    trainable = True

    def preprocess_without_weights(self, model_id: str, spec: dict[str, Any]) -> Any:
        from timm.data import create_transform, resolve_data_config

        # create_model kwargs (img_size, dynamic_img_size, ...) leave the model's pretrained_cfg as it is
        data_config = resolve_data_config(_overrides(spec), pretrained_cfg=_pretrained_cfg(model_id, spec))
        return create_transform(**data_config, is_training=False)

    def check(self, model_id: str, spec: dict[str, Any]) -> None:
        import timm

        name = str(spec["name"])
        unknown = sorted(set(spec.get("preprocess") or {}) - PREPROCESS_KEYS)
        if unknown:
            raise VlmprobeError(f"Model {model_id!r}: `preprocess` keys {unknown} are not timm data-config keys.", f"use {sorted(PREPROCESS_KEYS)}.")
        if name.startswith(("hf-hub:", "hf_hub:")):
            from vlmprobe.models.hub_registry import check_timm_hub, strip_hub_prefix

            check_timm_hub(model_id, strip_hub_prefix(name))  # local HF cache or vendored record; see hub_registry
            return
        base = name.split(".")[0]
        if not timm.is_model(base):
            raise unknown_name_error("timm model", name, timm.list_models(), model_id, "use a name from timm.list_models() or hf-hub:org/repo.")
        pretrained = spec.get("pretrained")
        if isinstance(pretrained, str) and not Path(pretrained).is_file():
            from vlmprobe.models.checkpoints import missing_weights_file

            raise missing_weights_file(pretrained, model_id)
        if pretrained is True and not timm.list_pretrained(name) and not timm.list_pretrained(f"{name}.*"):
            raise VlmprobeError(f"Model {model_id!r}: timm has no pretrained weights for {name!r}.", "set `pretrained: false` or pick a tagged name.")

    def load(self, model_id: str, spec: dict[str, Any], device: str = "cpu") -> Encoder:
        import timm
        from timm.data import create_transform, resolve_data_config

        from vlmprobe.models.checkpoints import load_checkpoint_into, sha256

        name = str(spec["name"])
        pretrained = spec.get("pretrained")
        kwargs = dict(spec.get("kwargs", {}))
        try:
            model = timm.create_model(name, pretrained=pretrained is True, num_classes=0, **kwargs)
        except Exception as error:  # noqa: BLE001
            raise VlmprobeError(
                f"Model {model_id!r}: timm could not create {name!r} (pretrained={pretrained!r}): {type(error).__name__}: {str(error)[:300]}.",
                OFFLINE_FIX,
            ) from error
        digest = fit = None
        if isinstance(pretrained, str):
            fit = load_checkpoint_into(
                model, pretrained, name,
                head_prefixes=_head_prefixes(model),
                filter_fn=_checkpoint_filter(model),
                key=spec.get("checkpoint_key"),
                alternatives=lambda checkpoint: _fitting_architectures(checkpoint, name, kwargs),
            ).as_metadata()
            digest = sha256(pretrained)
        data_config = resolve_data_config(_overrides(spec), model=model)
        preprocess = create_transform(**data_config, is_training=False)
        model.eval().to(device)
        return Encoder(
            model_id=model_id,
            family=self.name,
            spec=spec,
            image_module=model,
            preprocess=preprocess,
            preprocess_info={"timm_data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()}, "transform": describe_transform(preprocess)},
            embed_dim=int(model.num_features),
            checkpoint_sha256=digest,
            checkpoint_fit=fit,
            extras={"architecture": name},
        )

    def cam_layer(self, encoder: Encoder) -> tuple[Any, Any, str]:
        """ViT-like: the last block's ``norm1`` (prefix tokens dropped); else the last ``feature_info`` stage."""
        from vlmprobe.models.cam_layers import timm_layer

        return timm_layer(encoder.image_module, "")
