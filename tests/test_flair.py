"""``flair``: a checkpoint written in the authors' exact layout (``torch.save(FLAIRModel.state_dict())``: trunk
under ``vision_model.model.*``, bias-free ``vision_model.projection_head_vision.projection``, text tower and
``logit_scale`` beside it) loads through the config as a user writes it, and embeds as torchvision's ResNet-50
with the same weights does after the authors' preprocessing, re-implemented here from their code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file

from support.cam import family_map

from vlmprobe.errors import VlmprobeError
from vlmprobe.models import check_spec, load_encoder


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(reference trunk, projection, path of flair_resnet.pth, path of model.safetensors)."""
    torch.manual_seed(0)
    trunk = torchvision.models.resnet50(weights=None)
    trunk.fc = torch.nn.Identity()
    with torch.no_grad():
        for name, buffer in trunk.named_buffers():  # non-trivial BN statistics: a lost buffer would show
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    projection = torch.nn.Linear(2048, 512, bias=False)
    state = {f"vision_model.model.{k}": v for k, v in trunk.state_dict().items()}
    state["vision_model.projection_head_vision.projection.weight"] = projection.weight.detach().clone()
    state["text_model.model.embeddings.word_embeddings.weight"] = torch.randn(30, 8)  # Bio_ClinicalBERT, shrunk
    state["text_model.projection_head_text.projection.weight"] = torch.randn(512, 768)
    state["logit_scale"] = torch.tensor(2.659)
    folder = tmp_path_factory.mktemp("flair")
    torch.save(state, folder / "flair_resnet.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
    return trunk.eval(), projection, folder / "flair_resnet.pth", folder / "model.safetensors"


def authors_preprocess(image: Image.Image, size: int) -> torch.Tensor:
    """jusiro/FLAIR flair/pretraining/data/transforms.py:37-39 (LoadImage) and :77-86 (ImageScaling, canvas)."""
    img = np.array(image.convert("RGB"), dtype=float)
    if np.max(img) > 1:
        img /= 255
    img = torch.tensor(np.transpose(img, (2, 0, 1)))
    scale = max(img.shape[-2:]) / size
    img = torchvision.transforms.Resize((int(img.shape[-2] / scale), int(img.shape[-1] / scale)), antialias=True)(img)
    return torch.nn.functional.pad(img, (0, size - img.shape[-1], 0, size - img.shape[-2], 0, 0)).float()


def _image(width=90, height=61, seed=1):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_preprocessing_is_the_authors_on_a_non_square_image(release):
    encoder = load_encoder("flair", {"family": "flair", "name": "resnet_v1", "pretrained": str(release[2])})
    for image in (_image(90, 61), _image(40, 97, seed=2), _image(64, 64, seed=3)):
        ours = encoder.preprocess(image)
        assert ours.shape == (3, 512, 512)
        # theirs resizes in float64, ours in float32 (what the model runs): equal to 1e-5 of the [0, 1] range
        torch.testing.assert_close(ours, authors_preprocess(image, 512), atol=1e-5, rtol=0)
    tall = encoder.preprocess(_image(40, 97, seed=2))
    assert tall[:, :, 212:].abs().sum() == 0 and tall[:, :, :211].abs().sum() > 0  # zeros right of the image only


@pytest.mark.parametrize("weights", ["pth", "safetensors"])
@pytest.mark.slow
def test_embeddings_equal_torchvision_resnet50_with_the_same_weights(release, weights):
    trunk, projection, pth, safetensors = release
    path = pth if weights == "pth" else safetensors
    spec = {"family": "flair", "name": "resnet_v1", "pretrained": str(path), "image_size": 96}
    check_spec("flair", spec)
    encoder = load_encoder("flair", spec)
    batch = torch.stack([authors_preprocess(_image(seed=s), 96) for s in (1, 2)])
    with torch.no_grad():
        reference = trunk(batch)
        torch.testing.assert_close(encoder.encode_image(torch.stack([encoder.preprocess(_image(seed=s)) for s in (1, 2)])), reference, atol=1e-4, rtol=1e-4)
        assert encoder.embed_dim == 2048
        projected = load_encoder("flair", {**spec, "output": "projected"})
        unit = reference / reference.norm(dim=-1, keepdim=True)
        expected = unit @ projection.weight.T
        expected = expected / expected.norm(dim=-1, keepdim=True)
        torch.testing.assert_close(projected.encode_image(batch), expected, atol=1e-5, rtol=1e-4)
    ignored = encoder.checkpoint_fit["ignored_not_in_encoder"]
    assert encoder.checkpoint_fit["stripped_prefix"] == "vision_model." and ignored["count"] == 3  # text tower, logit_scale


def test_the_offline_check_names_a_missing_or_wrong_file(release, tmp_path):
    with pytest.raises(VlmprobeError, match="flair_resnet.pth"):
        check_spec("flair", {"family": "flair", "name": "resnet_v1", "pretrained": str(tmp_path / "nowhere.pth")})
    wrong = tmp_path / "swint_mc.tar"
    torch.save({"model": {"image_encoder.image_encoder.embeddings.norm.weight": torch.ones(2)}}, wrong)
    with pytest.raises(VlmprobeError, match=r"is not FLAIR's weights.*vision_model\.model\.conv1\.weight.*image_encoder"):
        check_spec("flair", {"family": "flair", "name": "resnet_v1", "pretrained": str(wrong)})
    with pytest.raises(VlmprobeError, match="resnet_v1"):
        check_spec("flair", {"family": "flair", "name": "efficientnet", "pretrained": str(release[2])})


def test_the_heatmaps_stage_reads_its_input_geometry(release):
    """512 x 512, no mean/std (RGB / 255): what the heatmaps stage feeds the tower, and its Grad-CAM layer."""
    from vlmprobe.heatmaps.geometry import input_geometry

    encoder = load_encoder("flair", {"family": "flair", "name": "resnet_v1", "pretrained": str(release[2])})
    geometry = input_geometry(encoder)
    assert geometry.size == (512, 512) and geometry.mean == (0.0, 0.0, 0.0) and geometry.std == (1.0, 1.0, 1.0)
    assert "layer4[-1]" in family_map(encoder, torch.stack([authors_preprocess(_image(seed=1), 64)]))[1]
