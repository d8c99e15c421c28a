"""``torchvision``: torchvision classification models as feature extractors (the poster's VGG16,
ResNet50, ViT-L-16). The last ``Linear`` layer (the ImageNet classifier) becomes ``Identity``, so
the embedding is the penultimate representation (4,096-D for VGG16, 2,048-D for ResNet50,
1,024-D for ViT-L/16).

``pretrained``: a weights enum name of the model (``DEFAULT``, ``IMAGENET1K_V1``, ...; downloaded on
first use), null for random init, or a checkpoint file. The preprocessing is the weights' own
``transforms()``; for random init or files, that of the model's DEFAULT weights (same resize/crop/
normalisation), so a pre-staged checkpoint keeps the preprocessing it was trained with.
"""

from __future__ import annotations

import contextlib
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


def _feature_extractor(model):
    """(model with its last ``Linear`` - the ImageNet classifier - made ``Identity``, that layer's key prefix)."""
    import torch

    last = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            last = name
    if last is None:
        return model, ()
    parent_name, _, attribute = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attribute, torch.nn.Identity())
    return model, (f"{last}.",)


def _fitting_architectures(checkpoint, name: str) -> list[str]:
    import torchvision

    from vlmprobe.models.checkpoints import architectures_fitting, close_names

    known = torchvision.models.list_models(module=torchvision.models)
    return architectures_fitting(checkpoint, close_names(name, known), lambda n: _feature_extractor(torchvision.models.get_model(n, weights=None)))


@contextlib.contextmanager
def _weights_only_downloads():
    """torchvision reads its downloaded weights with ``torch.hub.load_state_dict_from_url``, which by default
    unpickles them like any pickle; make every such read ``weights_only=True`` while a model is built."""
    from torchvision.models import _api

    original = _api.load_state_dict_from_url

    def weights_only(*args, **kwargs):
        kwargs["weights_only"] = True
        return original(*args, **kwargs)

    _api.load_state_dict_from_url = weights_only
    try:
        yield
    finally:
        _api.load_state_dict_from_url = original


@register_family
class TorchvisionFamily(ModelFamily):
    name = "torchvision"
    trainable = True

    def check(self, model_id: str, spec: dict[str, Any]) -> None:
        import torchvision

        name = str(spec["name"])
        known = torchvision.models.list_models(module=torchvision.models)
        if name not in known:
            raise unknown_name_error("torchvision model", name, known, model_id, "use a name from torchvision.models.list_models().")
        pretrained = spec.get("pretrained")
        if pretrained in (None, False):
            return
        weights_enum = torchvision.models.get_model_weights(name)
        if str(pretrained) in {"DEFAULT", *weights_enum.__members__}:
            return
        if Path(str(pretrained)).is_file():
            return
        if "/" in str(pretrained) or Path(str(pretrained)).suffix or Path(str(pretrained)).is_dir():
            from vlmprobe.models.checkpoints import missing_weights_file

            raise missing_weights_file(str(pretrained), model_id)
        raise unknown_name_error(
            f"weights of {name}", str(pretrained), ["DEFAULT", *weights_enum.__members__], model_id,
            "use DEFAULT, a weights enum name, a checkpoint file, or null.",
        )

    def preprocess_without_weights(self, model_id: str, spec: dict[str, Any]) -> Any:
        """The weights' own ``transforms()`` (of DEFAULT for random init or files); ``image_size`` resizes and crops to it."""
        import torchvision

        weights_enum = torchvision.models.get_model_weights(str(spec["name"]))
        pretrained = spec.get("pretrained")
        is_enum = isinstance(pretrained, str) and pretrained in {"DEFAULT", *weights_enum.__members__}
        preprocess = (weights_enum[pretrained] if is_enum else weights_enum.DEFAULT).transforms()
        if spec.get("image_size"):
            preprocess.crop_size = [int(spec["image_size"])]
            preprocess.resize_size = [int(spec["image_size"])]
        return preprocess

    def load(self, model_id: str, spec: dict[str, Any], device: str = "cpu") -> Encoder:
        import torch
        import torchvision

        from vlmprobe.models.checkpoints import (
            load_checkpoint_into,
            refused_pickle,
            sha256,
            unreadable_checkpoint,
        )

        name = str(spec["name"])
        pretrained = spec.get("pretrained")
        weights_enum = torchvision.models.get_model_weights(name)
        is_enum = isinstance(pretrained, str) and pretrained in {"DEFAULT", *weights_enum.__members__}
        weights = weights_enum[pretrained] if is_enum else None
        try:
            with _weights_only_downloads():
                model = torchvision.models.get_model(name, weights=weights)
        except Exception as error:  # noqa: BLE001
            if refused_pickle(error):
                raise unreadable_checkpoint(Path(f"{weights.url if weights else name}"), error) from error
            raise VlmprobeError(
                f"Model {model_id!r}: torchvision could not load {name!r} weights {pretrained!r}: {type(error).__name__}: {str(error)[:300]}.",
                OFFLINE_FIX,
            ) from error
        model, head_prefixes = _feature_extractor(model)
        digest = fit = None
        if isinstance(pretrained, str) and not is_enum:
            fit = load_checkpoint_into(
                model, pretrained, name,
                head_prefixes=head_prefixes,
                key=spec.get("checkpoint_key"),
                alternatives=lambda checkpoint: _fitting_architectures(checkpoint, name),
            ).as_metadata()
            digest = sha256(pretrained)
        preprocess = self.preprocess_without_weights(model_id, spec)
        model = model.eval().to(device)
        with torch.no_grad():
            size = preprocess.crop_size[0]
            embed_dim = int(model(torch.zeros(1, 3, size, size, device=device)).shape[-1])
        return Encoder(
            model_id=model_id,
            family=self.name,
            spec=spec,
            image_module=model,
            preprocess=preprocess,
            preprocess_info={"transform": describe_transform(preprocess)},
            embed_dim=embed_dim,
            checkpoint_sha256=digest,
            checkpoint_fit=fit,
            extras={"architecture": name},
        )

    def cam_layer(self, encoder: Encoder) -> tuple[Any, Any, str]:
        """ViT: the last encoder layer's ``ln_1``; Swin: ``features[-1]`` (NHWC -> NCHW); ResNet-like:
        ``layer4[-1]``; VGG, DenseNet, EfficientNet, ConvNeXt, MobileNet: ``features[-1]``."""
        from torchvision.models.swin_transformer import SwinTransformer
        from torchvision.models.vision_transformer import VisionTransformer

        from vlmprobe.models.cam_layers import ChannelsLastToFirst, TokenGrid, last_conv

        model = encoder.image_module
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
        return last_conv(model), None, "torchvision: last Conv2d"
