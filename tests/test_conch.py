"""``conch``: a ``pytorch_model.bin`` in the released key layout (``visual.trunk.*`` timm ViT, ``visual.attn_pool_contrast``
with separate q/k/v projections since kdim != d_model, ``ln_contrast``, ``proj_contrast``, plus the captioning pooler,
text tower, decoder and ``logit_scale`` it must leave alone) embeds as the authors' ``encode_image`` computed here with
``F.multi_head_attention_forward`` on the file's own tensors, after their transform re-done with PIL."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from support.cam import family_map
from timm.models.vision_transformer import VisionTransformer

from vlmprobe.errors import VlmprobeError
from vlmprobe.models import check_spec, load_encoder

# a CONCH-shaped tower, shrunk: width 24 tokens pooled by a 16-wide query (kdim != d_model, as 768 vs 512)
SMALL = {"width": 24, "layers": 2, "heads": 2, "patch_size": 8, "image_size": 32, "embed_dim": 16, "pool_heads": 2}
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _pooler(prefix: str, d_model: int, context: int, queries: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(len(prefix) + queries)
    rand = lambda *shape: torch.randn(*shape, generator=g) * 0.2
    return {
        f"{prefix}.query": rand(queries, d_model),
        f"{prefix}.attn.q_proj_weight": rand(d_model, d_model), f"{prefix}.attn.k_proj_weight": rand(d_model, context),
        f"{prefix}.attn.v_proj_weight": rand(d_model, context), f"{prefix}.attn.in_proj_bias": rand(3 * d_model),
        f"{prefix}.attn.out_proj.weight": rand(d_model, d_model), f"{prefix}.attn.out_proj.bias": rand(d_model),
        f"{prefix}.ln_q.weight": 1 + rand(d_model), f"{prefix}.ln_q.bias": rand(d_model),
        f"{prefix}.ln_k.weight": 1 + rand(context), f"{prefix}.ln_k.bias": rand(context),
    }


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    torch.manual_seed(0)
    trunk = VisionTransformer(embed_dim=24, depth=2, num_heads=2, img_size=32, patch_size=8, num_classes=0, dynamic_img_size=True).eval()
    state = {f"visual.trunk.{k}": v for k, v in trunk.state_dict().items()}
    state.update(_pooler("visual.attn_pool_contrast", 16, 24, 1))
    state.update(_pooler("visual.attn_pool_caption", 24, 24, 4))  # the captioning pooler: not for the image embedding
    state.update({"visual.ln_contrast.weight": 1 + 0.1 * torch.randn(16), "visual.ln_contrast.bias": 0.1 * torch.randn(16),
                  "visual.proj_contrast": 0.3 * torch.randn(16, 16), "visual.ln_caption.weight": torch.ones(24),
                  "visual.ln_caption.bias": torch.zeros(24), "text.token_embedding.weight": torch.randn(50, 8),
                  "text_decoder.ln_final.weight": torch.ones(8), "logit_scale": torch.tensor(4.6)})
    path = tmp_path_factory.mktemp("conch") / "pytorch_model.bin"
    torch.save(state, path)
    return trunk, state, path


def reference(trunk, state, batch):
    """encode_image(proj_contrast=False, normalize=False) and encode_image(): vision_tower.py:121-138, transformer.py:176-185."""
    p = "visual.attn_pool_contrast."
    tokens = F.layer_norm(trunk.forward_features(batch), (24,), state[p + "ln_k.weight"], state[p + "ln_k.bias"]).transpose(0, 1)
    query = F.layer_norm(state[p + "query"], (16,), state[p + "ln_q.weight"], state[p + "ln_q.bias"]).unsqueeze(1).expand(1, batch.shape[0], 16)
    attended, _ = F.multi_head_attention_forward(
        query, tokens, tokens, 16, 2, None, state[p + "attn.in_proj_bias"], None, None, False, 0.0,
        state[p + "attn.out_proj.weight"], state[p + "attn.out_proj.bias"], training=False, need_weights=False,
        use_separate_proj_weight=True, q_proj_weight=state[p + "attn.q_proj_weight"],
        k_proj_weight=state[p + "attn.k_proj_weight"], v_proj_weight=state[p + "attn.v_proj_weight"],
    )
    pooled = F.layer_norm(attended[0], (16,), state["visual.ln_contrast.weight"], state["visual.ln_contrast.bias"])
    return pooled, F.normalize(pooled @ state["visual.proj_contrast"], dim=-1)


def authors_transform(image: Image.Image, size: int) -> torch.Tensor:
    """transform.py:30-38 done with PIL: shortest side to ``size`` (bicubic), centre crop, OpenAI normalisation."""
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)
    image = image.resize((size, new_long) if w <= h else (new_long, size), Image.BICUBIC)
    w, h = image.size
    left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    array = np.asarray(image.crop((left, top, left + size, top + size)).convert("RGB"), dtype=np.float32) / 255
    return (torch.tensor(array).permute(2, 0, 1) - torch.tensor(OPENAI_MEAN)[:, None, None]) / torch.tensor(OPENAI_STD)[:, None, None]


def _image(width=53, height=37, seed=1):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_embeds_as_the_authors_encode_image(release):
    trunk, state, path = release
    spec = {"family": "conch", "name": "conch_ViT-B-16", "pretrained": str(path), "kwargs": SMALL}
    check_spec("conch", spec)
    encoder = load_encoder("conch", spec)
    images = [_image(53, 37, seed=1), _image(30, 61, seed=2)]
    batch = torch.stack([authors_transform(i, 32) for i in images])
    torch.testing.assert_close(torch.stack([encoder.preprocess(i) for i in images]), batch, atol=1e-6, rtol=0)
    with torch.no_grad():
        pooled, projected = reference(trunk, state, batch)
        torch.testing.assert_close(encoder.encode_image(batch), pooled, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(load_encoder("conch", {**spec, "output": "projected"}).encode_image(batch), projected, atol=1e-5, rtol=1e-4)
    assert encoder.embed_dim == 16
    ignored = encoder.checkpoint_fit["ignored_not_in_encoder"]["count"]
    assert encoder.checkpoint_fit["stripped_prefix"] == "visual." and ignored == 11 + 2 + 3  # caption pooler, ln_caption, text/decoder/scale


def test_grad_cam_attributes_the_last_trunk_block(release):
    encoder = load_encoder("conch", {"family": "conch", "name": "conch_ViT-B-16", "pretrained": str(release[2]), "kwargs": SMALL})
    maps, rule = family_map(encoder, torch.stack([authors_transform(_image(seed=s), 32) for s in (1, 2)]))
    assert maps.shape == (2, 32, 32) and maps.max() > 0 and "blocks[-1].norm1" in rule


def test_the_released_preprocessing_is_448_bicubic(release):
    encoder = load_encoder("conch", {"family": "conch", "name": "conch_ViT-B-16", "pretrained": str(release[2]), "kwargs": SMALL, "image_size": 448})
    image = _image(600, 451, seed=3)
    torch.testing.assert_close(encoder.preprocess(image), authors_transform(image, 448), atol=1e-6, rtol=0)


def test_gated_weights_come_from_the_local_cache_or_a_clear_error(release, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    spec = {"family": "conch", "name": "conch_ViT-B-16", "pretrained": "hf_hub:MahmoodLab/conch", "kwargs": SMALL}
    with pytest.raises(VlmprobeError, match=r"gated.*accept the terms at https://huggingface.co/MahmoodLab/conch"):
        check_spec("conch", spec)
    snapshot = tmp_path / "hub" / "models--MahmoodLab--conch" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "pytorch_model.bin").write_bytes(release[2].read_bytes())
    (tmp_path / "hub" / "models--MahmoodLab--conch" / "refs").mkdir()
    (tmp_path / "hub" / "models--MahmoodLab--conch" / "refs" / "main").write_text("0123abcd")
    check_spec("conch", spec)
    assert load_encoder("conch", spec).embed_dim == 16


def test_the_offline_check_names_a_wrong_file(tmp_path):
    wrong = tmp_path / "flair_resnet.pth"
    torch.save({"vision_model.model.conv1.weight": torch.ones(1)}, wrong)
    with pytest.raises(VlmprobeError, match=r"is not CONCH's pytorch_model\.bin.*visual\.trunk.*vision_model"):
        check_spec("conch", {"family": "conch", "name": "conch_ViT-B-16", "pretrained": str(wrong)})
    with pytest.raises(VlmprobeError, match="conch_ViT-B-16"):
        check_spec("conch", {"family": "conch", "name": "conch_ViT-L-14", "pretrained": str(wrong)})


def test_the_released_architecture_has_the_published_shapes():
    """Built at full size on the meta device: the shapes of MahmoodLab/conch's pytorch_model.bin."""
    from vlmprobe.models.families.conch_family import VISION, _tower_class

    with torch.device("meta"):
        tower = _tower_class()("pooled", VISION)
    shapes = {k: tuple(v.shape) for k, v in tower.state_dict().items()}
    assert shapes["trunk.pos_embed"] == (1, 785, 768) and shapes["trunk.patch_embed.proj.weight"] == (768, 3, 16, 16)
    assert shapes["attn_pool_contrast.query"] == (1, 512) and shapes["attn_pool_contrast.attn.k_proj_weight"] == (512, 768)
    assert shapes["attn_pool_contrast.attn.q_proj_weight"] == (512, 512) and shapes["proj_contrast"] == (512, 512)
    assert len([k for k in shapes if k.startswith("trunk.blocks.") and k.endswith("attn.qkv.weight")]) == 12
