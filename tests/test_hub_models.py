"""Hub names resolved offline (local cache or vendored record) and the transformers_clip family on a tiny CLIP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vlmprobe.errors import VlmprobeError
from vlmprobe.models import check_spec, hub_registry, load_encoder

LLM2CLIP = "microsoft/LLM2CLIP-Openai-L-14-336"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache that try_to_load_from_cache reads (no network involved)."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def cache_file(cache: Path, repo_id: str, filename: str, payload: dict) -> None:
    """Lay out one file the way huggingface_hub caches it (refs/main -> snapshots/<commit>/<file>)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / filename).write_text(json.dumps(payload))


def test_known_repositories_resolve_from_the_vendored_record(hf_cache):
    config, where = hub_registry.resolve("m", LLM2CLIP.lower(), "transformers")  # hub ids are case-insensitive
    assert where == "vendored" and config["vision_config"]["image_size"] == 336
    with pytest.raises(VlmprobeError, match="is a transformers model, not a timm one"):
        hub_registry.resolve("m", LLM2CLIP, "timm")
    with pytest.raises(VlmprobeError, match=r"did you mean \['microsoft/LLM2CLIP-Openai-L-14-336'\]"):
        hub_registry.resolve("m", "microsoft/LLM2CLIP-Openai-L-14-363", "transformers")
    with pytest.raises(VlmprobeError, match="form org/repo"):
        hub_registry.resolve("m", "LLM2CLIP", "transformers")


def test_the_local_cache_resolves_other_repositories_and_is_checked_against_the_record(hf_cache):
    cache_file(hf_cache, "someone/tiny-vit", "config.json", {"architecture": "vit_tiny_patch16_224"})
    check_spec("tiny", {"family": "timm", "name": "hf-hub:someone/tiny-vit", "pretrained": True})
    cache_file(hf_cache, "someone/not-timm", "config.json", {"architecture": "vit_nonexistent_9000"})
    with pytest.raises(VlmprobeError, match="vit_nonexistent_9000"):
        check_spec("bad", {"family": "timm", "name": "hf-hub:someone/not-timm", "pretrained": True})
    # a cached config that leaves image_size out gets the record's 336, one that contradicts the record fails
    cache_file(hf_cache, LLM2CLIP, "config.json", {"model_type": "clip", "vision_config": {"hidden_size": 1024, "patch_size": 14}})
    config, where = hub_registry.resolve("m", LLM2CLIP, "transformers")
    assert where == "cache" and config["vision_config"]["image_size"] == 336
    cache_file(hf_cache, LLM2CLIP, "config.json", {"model_type": "clip", "vision_config": {"hidden_size": 768, "patch_size": 14}})
    with pytest.raises(VlmprobeError, match=r"disagrees with vlmprobe's record.*hidden_size: 1024 != 768"):
        hub_registry.resolve("m", LLM2CLIP, "transformers")


def test_open_clip_hub_model_needs_its_timm_trunk(hf_cache, monkeypatch):
    check_spec("biomedclip", {"family": "open_clip", "name": "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"})
    cache_file(hf_cache, "someone/odd-clip", "open_clip_config.json", {"model_cfg": {"vision_cfg": {"timm_model_name": "vit_huge_typo"}}})
    with pytest.raises(VlmprobeError, match="vit_huge_typo"):
        check_spec("odd", {"family": "open_clip", "name": "hf-hub:someone/odd-clip"})


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    """A random 2-layer CLIP vision tower saved as a hub repository would hold it (config, weights, processor)."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    folder = tmp_path_factory.mktemp("tiny-clip")
    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2, patch_size=8, image_size=32, projection_dim=16)
    CLIPVisionModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_transformers_clip_loads_a_local_tower_and_embeds(tiny_clip):
    from PIL import Image
    from transformers import CLIPVisionModel

    spec = {"family": "transformers_clip", "name": f"local-dir:{tiny_clip}"}
    check_spec("tiny", spec)
    encoder = load_encoder("tiny", spec)
    image = Image.new("RGB", (48, 40), (120, 30, 200))
    batch = encoder.preprocess(image).unsqueeze(0)
    assert batch.shape == (1, 3, 32, 32) and encoder.embed_dim == 32
    reference = CLIPVisionModel.from_pretrained(tiny_clip).eval()
    with torch.no_grad():
        assert torch.allclose(encoder.encode_image(batch), reference(pixel_values=batch).pooler_output, atol=1e-6)
        patches = load_encoder("tiny", {**spec, "output": "penultimate_mean"}).encode_image(batch)
        hidden = reference(pixel_values=batch, output_hidden_states=True).hidden_states[-2]
        assert torch.allclose(patches, hidden[:, 1:].mean(1), atol=1e-6)
    assert encoder.preprocess_info["processor"]["shortest_edge"] == 32 and encoder.preprocess_info["output"] == "pooled"


def test_transformers_clip_refuses_partial_checkpoints_and_other_models(tiny_clip, tmp_path):
    with pytest.raises(VlmprobeError, match=r"missing \['visual_projection.weight'\]"):
        load_encoder("tiny", {"family": "transformers_clip", "name": f"local-dir:{tiny_clip}", "output": "projected"})
    with pytest.raises(VlmprobeError, match="no readable config.json"):
        check_spec("none", {"family": "transformers_clip", "name": f"local-dir:{tmp_path}"})
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "siglip"}))
    with pytest.raises(VlmprobeError, match="not a CLIP model"):
        check_spec("siglip", {"family": "transformers_clip", "name": f"local-dir:{tmp_path}"})
    with pytest.raises(VlmprobeError, match="`output: cls`"):
        check_spec("x", {"family": "transformers_clip", "name": "openai/clip-vit-large-patch14-336", "output": "cls"})
