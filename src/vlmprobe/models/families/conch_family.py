"""``conch``: CONCH (Lu et al., Nature Medicine 2024; mahmoodlab/CONCH), the released ``pytorch_model.bin`` read as published.

CONCH is a CoCa model (conch/open_clip_custom/coca_model.py:150-192, config
``model_configs/conch_ViT-B-16.json``). Its image tower (``VisualModel``, vision_tower.py:13-64) is a timm
``VisionTransformer`` trunk (width 768, 12 layers, 12 heads, patch 16, ``img_size=448``, ``num_classes=0``,
``dynamic_img_size=True``, run as ``forward_features``: coca_model.py:76-86), an attentional pooler of one
learned 512-wide query attending over the 768-wide tokens with 8 heads (``AttentionalPooler``,
transformer.py:161-188: ``ln_k`` on the tokens, ``ln_q`` on the query, ``nn.MultiheadAttention(512, 8,
kdim=768, vdim=768)``), ``ln_contrast`` and a 512 x 512 ``proj_contrast`` (vision_tower.py:46-50). Keys:
``visual.trunk.*``, ``visual.attn_pool_contrast.*``, ``visual.ln_contrast.*``, ``visual.proj_contrast``; the
captioning pooler (``visual.attn_pool_caption.*``, ``visual.ln_caption.*``), ``text.*``, ``text_decoder.*`` and
``logit_scale`` are not part of the image embedding and are not loaded. Spec keys:

- ``name``: ``conch_ViT-B-16`` (the released configuration);
- ``pretrained``: the released ``pytorch_model.bin`` (the hub's ``MahmoodLab/conch`` is gated: accept its terms,
  then ``huggingface-cli download MahmoodLab/conch pytorch_model.bin``), or ``hf_hub:MahmoodLab/conch`` read
  from the local Hugging Face cache (never downloaded by a job);
- ``output``: ``pooled`` (default: ``encode_image(proj_contrast=False, normalize=False)``, the 512-D features
  "suitable for linear probe", README.md:156-158, i.e. ``forward_no_head``: the pooled query after
  ``ln_contrast``, vision_tower.py:121-130) or ``projected`` (``encode_image()``'s default: through
  ``proj_contrast`` and L2-normalised, README.md:163, vision_tower.py:136-138, coca_model.py:207-210).

Preprocessing as ``create_model_from_pretrained`` returns it (factory.py:71-72, 104-111; transform.py:30-38):
shortest side to 448 (bicubic), centre crop 448, RGB, ``ToTensor``, ``Normalize`` with OpenAI's CLIP mean / std.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from vlmprobe.errors import VlmprobeError
from vlmprobe.models.base import Encoder, ModelFamily, describe_transform, register_family

OUTPUTS = ("pooled", "projected")
HUB_REPO = "MahmoodLab/conch"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
#: conch_ViT-B-16.json's vision_cfg with CoCaVisionCfg's defaults (coca_model.py:40-52)
VISION = {"width": 768, "layers": 12, "heads": 12, "mlp_ratio": 4, "patch_size": 16, "image_size": 448, "embed_dim": 512, "pool_heads": 8}
RELEASE = "CONCH's pytorch_model.bin (MahmoodLab/conch on the hub, gated)"
REQUIRED = ("visual.trunk.patch_embed.proj.weight", "visual.trunk.blocks.", "visual.attn_pool_contrast.query",
            "visual.ln_contrast.weight", "visual.proj_contrast")


def _weights(model_id: str, spec: dict[str, Any]) -> Path:
    """The local file ``pretrained`` names: a path, or ``hf_hub:MahmoodLab/conch`` in the local Hugging Face cache."""
    from vlmprobe.models.hub_registry import strip_hub_prefix
    from vlmprobe.models.layouts import require_file

    value = str(spec.get("pretrained") or "")
    repo = strip_hub_prefix(value)
    if repo is None:
        return require_file(model_id, spec, (".bin", ".pt", ".pth", ".safetensors"), RELEASE)
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo, "pytorch_model.bin")
    if not isinstance(cached, str):
        raise VlmprobeError(
            f"Model {model_id!r}: {repo}'s pytorch_model.bin is not in the local Hugging Face cache, and jobs never download it (the repository is gated).",
            f"accept the terms at https://huggingface.co/{repo}, then on a machine with internet `huggingface-cli login` and "
            f"`huggingface-cli download {repo} pytorch_model.bin`; copy the file to the cluster and set `pretrained:` to it.",
        )
    return Path(cached)


@functools.cache
def _tower_class():
    import torch

    class AttentionalPooler(torch.nn.Module):
        """CONCH's ``AttentionalPooler`` (transformer.py:161-188), its parameters under the same names."""

        def __init__(self, d_model: int, context_dim: int, n_head: int, n_queries: int):
            super().__init__()
            self.query = torch.nn.Parameter(torch.randn(n_queries, d_model))
            self.attn = torch.nn.MultiheadAttention(d_model, n_head, kdim=context_dim, vdim=context_dim)
            self.ln_q = torch.nn.LayerNorm(d_model)
            self.ln_k = torch.nn.LayerNorm(context_dim)

        def forward(self, x):
            x = self.ln_k(x).permute(1, 0, 2)  # NLD -> LND
            q = self.ln_q(self.query).unsqueeze(1).repeat(1, x.shape[1], 1)
            return self.attn(q, x, x, need_weights=False)[0].permute(1, 0, 2)

    class ConchVisual(torch.nn.Module):
        """CONCH's ``VisualModel`` for the contrastive embedding, under the keys of ``visual.*``."""

        def __init__(self, output: str, vision: dict[str, Any]):
            super().__init__()
            from timm.models.vision_transformer import VisionTransformer

            self.output = output
            self.trunk = VisionTransformer(
                embed_dim=vision["width"], depth=vision["layers"], num_heads=vision["heads"], mlp_ratio=vision["mlp_ratio"],
                img_size=vision["image_size"], patch_size=vision["patch_size"], num_classes=0, dynamic_img_size=True,
            )
            dim = vision["embed_dim"]
            self.attn_pool_contrast = AttentionalPooler(dim, vision["width"], vision["pool_heads"], 1)
            self.ln_contrast = torch.nn.LayerNorm(dim)
            self.proj_contrast = torch.nn.Parameter(torch.zeros(dim, dim))

        def forward(self, images):
            tokens = self.trunk.forward_features(images)
            pooled = self.ln_contrast(self.attn_pool_contrast(tokens)[:, 0])
            if self.output == "pooled":
                return pooled
            return torch.nn.functional.normalize(pooled @ self.proj_contrast, dim=-1)

    return ConchVisual


@register_family
class ConchFamily(ModelFamily):
    name = "conch"
    trainable = True

    def _vision(self, model_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        if spec.get("name") != "conch_ViT-B-16":
            raise VlmprobeError(f"Model {model_id!r}: CONCH `name: {spec.get('name')}` is not the released configuration.", "set `name: conch_ViT-B-16`.")
        if spec.get("output", "pooled") not in OUTPUTS:
            raise VlmprobeError(f"Model {model_id!r}: CONCH `output: {spec.get('output')}` is not one of {list(OUTPUTS)}.", "use `pooled` (the authors' linear-probe features) or `projected`.")
        unknown = sorted(set(spec.get("kwargs") or {}) - set(VISION))
        if unknown:
            raise VlmprobeError(f"Model {model_id!r}: CONCH `kwargs` {unknown} are not vision settings.", f"use keys among {sorted(VISION)}.")
        return {**VISION, **dict(spec.get("kwargs") or {})}  # kwargs: a smaller tower for tests

    def check(self, model_id: str, spec: dict[str, Any]) -> None:
        from vlmprobe.models.layouts import checkpoint_shapes, require_keys

        self._vision(model_id, spec)
        path = _weights(model_id, spec)
        require_keys(model_id, path, checkpoint_shapes(path, spec.get("checkpoint_key")), REQUIRED, RELEASE)

    def weight_files(self, spec: dict[str, Any]) -> list[str]:
        value = spec.get("pretrained")
        return [] if not isinstance(value, str) or value.startswith(("hf_hub:", "hf-hub:")) else [value]

    def input_files(self, spec: dict[str, Any]) -> list[str]:
        from vlmprobe.models.layouts import existing

        return existing(self.weight_files(spec))

    def preprocess_without_weights(self, model_id: str, spec: dict[str, Any]) -> Any:
        from torchvision import transforms

        size = int(spec.get("image_size", self._vision(model_id, spec)["image_size"]))
        return transforms.Compose(
            [
                transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
                transforms.CenterCrop(size),
                transforms.ToTensor(),
                transforms.Normalize(OPENAI_MEAN, OPENAI_STD),
            ]
        )

    def load(self, model_id: str, spec: dict[str, Any], device: str = "cpu") -> Encoder:
        from vlmprobe.models.checkpoints import load_checkpoint_into, sha256

        vision = self._vision(model_id, spec)
        output = spec.get("output", "pooled")
        path = _weights(model_id, spec)
        tower = _tower_class()(output, vision)
        fit = load_checkpoint_into(tower, path, "CONCH conch_ViT-B-16 (visual)", key=spec.get("checkpoint_key")).as_metadata()
        size = int(spec.get("image_size", vision["image_size"]))
        preprocess = self.preprocess_without_weights(model_id, spec)
        return Encoder(
            model_id=model_id,
            family=self.name,
            spec=spec,
            image_module=tower.eval().to(device),
            preprocess=preprocess,
            preprocess_info={"transform": describe_transform(preprocess), "output": output, "image_size": size},
            embed_dim=vision["embed_dim"],
            checkpoint_sha256=sha256(path),
            checkpoint_fit=fit,
            extras={"architecture": "CONCH conch_ViT-B-16 (timm ViT-B/16 trunk + attentional pooler)"},
        )

    def cam_layer(self, encoder: Encoder) -> tuple[Any, Any, str]:
        from vlmprobe.models.cam_layers import timm_layer

        return timm_layer(encoder.image_module.trunk, "trunk.")
