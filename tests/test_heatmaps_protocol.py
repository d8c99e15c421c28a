"""Grad-CAM under protocol sadman2025, each piece against a direct computation written here
(``vlmprobe.heatmaps.protocol``): pandas' sample, the layer (gradients of a class-token ViT), the zero-shot target."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from support import TINY_TIMM_VIT

from vlmprobe.errors import VlmprobeError
from vlmprobe.heatmaps import protocol as notebook
from vlmprobe.heatmaps.maps import compute_maps
from vlmprobe.heatmaps.scorers import DotProductScorer, HeadScorer
from vlmprobe.labels import CHEXPERT_CLASSES


@pytest.mark.parametrize("n_rows", [15, 16, 572, 573])
def test_notebook_sample_is_pandas_sample(n_rows):
    frame = pd.DataFrame({"filename": [f"{i}_IM-{i:04d}-1001.dcm.png" for i in range(n_rows)], "uid": np.arange(n_rows) * 3})
    expected = frame.sample(n=15, random_state=42).reset_index(drop=True)["filename"].tolist()
    assert [frame["filename"][i] for i in notebook.notebook_sample(n_rows)] == expected


def test_notebook_sample_of_a_short_table_is_every_row_in_the_draws_order():
    assert sorted(notebook.notebook_sample(7)) == list(range(7))
    assert notebook.notebook_sample(7) == np.random.RandomState(42).permutation(7).tolist()
    assert notebook.notebook_sample(0) == []


@pytest.fixture(scope="module")
def tiny_biomedclip():
    from vlmprobe.models import load_encoder

    torch.manual_seed(0)
    return load_encoder("tiny-biomedclip", TINY_TIMM_VIT, "cpu")


def _inputs(n=2, size=160):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_layer_is_blocks_minus_3_attn_proj_with_class_token_dropped(tiny_biomedclip):
    layer = notebook.notebook_layer(tiny_biomedclip)
    trunk = tiny_biomedclip.image_module.clip.visual.trunk
    assert layer.module is trunk.blocks[-3].attn.proj
    assert layer.name == f"clip.visual.trunk.blocks.{len(trunk.blocks) - 3}.attn.proj"
    tokens = torch.arange(2 * 101 * 4, dtype=torch.float32).reshape(2, 101, 4)
    grid = layer.reshape_transform(tokens)  # the notebook's vit_reshape: x[:, 1:].permute(0, 2, 1).reshape(B, C, 10, 10)
    assert torch.equal(grid, tokens[:, 1:, :].permute(0, 2, 1).reshape(2, 4, 10, 10))


def test_last_blocks_patch_tokens_get_no_gradient_minus_3_does(tiny_biomedclip):
    """The notebook's last cell uses blocks[-1].attn.proj: in a class-token-pooled ViT its patch tokens never
    reach the embedding, so their gradient is exactly zero and the maps are empty; blocks[-3] has gradient."""
    trunk = tiny_biomedclip.image_module.clip.visual.trunk
    assert trunk.global_pool == "token"
    scorer = DotProductScorer(tiny_biomedclip.image_module, torch.randn(5, 32, generator=torch.Generator().manual_seed(2)).numpy())
    for p in scorer.parameters():
        p.requires_grad_(True)
    last_patch, last_class = notebook.patch_gradient_norms(scorer, trunk.blocks[-1].attn.proj, _inputs(), target=3)
    third_patch, _ = notebook.patch_gradient_norms(scorer, trunk.blocks[-3].attn.proj, _inputs(), target=3)
    assert last_patch == 0.0 and last_class > 0.0
    assert third_patch > 0.0
    from vlmprobe.heatmaps.maps import CamLayer
    from vlmprobe.models.cam_layers import TokenGrid

    last = CamLayer(trunk.blocks[-1].attn.proj, "last", TokenGrid(1), "test")
    maps = compute_maps(scorer, last, _inputs(), [3, 3])
    assert np.all(maps == 0)  # the empty maps of the notebook's [-1] cell
    maps = compute_maps(scorer, notebook.notebook_layer(tiny_biomedclip), _inputs(), [3, 3])
    assert maps.max() > 0 and maps.shape == (2, 160, 160)


def test_zero_shot_target_is_raw_dot_product_gradcam():
    """The map for class c equals Grad-CAM written out by hand for (img_emb @ txt.T)[0, c] on blocks[-3].attn.proj."""
    from vlmprobe.heatmaps.settings import build_setting

    classes = list(CHEXPERT_CLASSES)
    setting = build_setting("zs", "tiny-biomedclip", TINY_TIMM_VIT, classes, "cpu", protocol="sadman2025")
    scorer = setting.scorer
    # unnormalised text embeddings of the bare class names (the notebook's extract_text_embeddings(classes))
    with torch.no_grad():
        text = setting.encoder.encode_text(classes).float()
    assert torch.allclose(scorer.class_embeddings, text)
    image = _inputs(1)
    with torch.no_grad():
        expected_scores = setting.encoder.image_module(image).float() @ text.T
    assert torch.allclose(scorer(image), expected_scores, atol=1e-5)

    layer = notebook.notebook_layer(setting.encoder)
    cls = 4
    ours = compute_maps(scorer, layer, image, [cls])[0]

    # by hand: activations A and gradients G of the layer's output, weights = mean of G over the grid, relu(sum w A)
    captured = {}
    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["a"] = output

    handle = layer.module.register_forward_hook(keep)
    scorer.zero_grad()
    out = scorer(image)
    (out @ torch.eye(len(classes))[cls]).sum().backward()
    handle.remove()
    a = captured["a"][:, 1:, :].detach()[0]  # (100, C), class token dropped
    g = captured["a"].grad[:, 1:, :][0]
    weights = g.mean(dim=0)
    cam = torch.relu(a @ weights).reshape(10, 10).numpy()
    import cv2

    cam = cv2.resize(cam, (160, 160))
    cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-7) if cam.max() > cam.min() else cam
    assert np.allclose(ours, cam, atol=1e-4)


def test_lp_ft_target_is_classifier_output(tiny_biomedclip):
    head = torch.nn.Linear(32, 14)
    scorer = HeadScorer(tiny_biomedclip.image_module, head)
    image = _inputs(1)
    with torch.no_grad():
        assert torch.allclose(scorer(image), head(tiny_biomedclip.image_module(image)), atol=1e-6)


def test_probabilities_in_titles(tiny_biomedclip):
    text = torch.randn(3, 32, generator=torch.Generator().manual_seed(3))
    image = _inputs(2)
    zs = DotProductScorer(tiny_biomedclip.image_module, text.numpy())
    with torch.no_grad():
        emb = tiny_biomedclip.image_module(image).float()
    cosine = torch.nn.functional.cosine_similarity(emb[:, None, :], text[None, :, :], dim=-1)
    assert np.allclose(notebook.notebook_probabilities("zs", zs, image), ((cosine + 1) / 2).numpy(), atol=1e-5)
    head = torch.nn.Linear(32, 3)
    lp = HeadScorer(tiny_biomedclip.image_module, head)
    with torch.no_grad():
        expected = torch.sigmoid(head(emb) / 50.0).numpy()
    assert np.allclose(notebook.notebook_probabilities("lp", lp, image), expected, atol=1e-6)


def test_every_class_in_notebook_order():
    classes = sorted(CHEXPERT_CLASSES)  # the manifest's sorted order
    order = notebook.notebook_class_order(classes)
    assert [classes[i] for i in order] == list(CHEXPERT_CLASSES)
    targets = notebook.notebook_targets([[classes.index("Cardiomegaly")]], order)[0]
    assert len(targets) == 14 and [classes[i] for i, _ in targets] == list(CHEXPERT_CLASSES)
    assert [kind for _, kind in targets].count("true") == 1 and targets[1] == (classes.index("Cardiomegaly"), "true")


def test_model_without_timm_vit_is_refused_with_the_fix():
    from support import TINY_VIT

    from vlmprobe.models import load_encoder

    encoder = load_encoder("tiny-vit", TINY_VIT, "cpu")
    with pytest.raises(VlmprobeError, match="target_layers"):
        notebook.notebook_layer(encoder)


def test_notebook_rows_follow_the_label_tables_order():
    """``test_df_iuxray`` keeps the label CSV's row order; the manifest is sorted by sample id: the 15 are drawn
    from the CSV order (meta_source_row), as pandas would from the notebook's table."""
    import pyarrow as pa

    from vlmprobe.heatmaps.stage import notebook_rows

    n = 40
    source = np.random.default_rng(0).permutation(n)  # manifest row i came from CSV row source[i]
    split = ["test" if i % 2 else "train" for i in range(n)]
    table = pa.table({"sample_id": [f"s{i:02d}" for i in range(n)], "split": split, "meta_source_row": [str(r) for r in source]})
    frame = pd.DataFrame({"sample_id": [f"s{i:02d}" for i in range(n)], "split": split, "row": source}).sort_values("row")
    test_df = frame[frame["split"] == "test"].reset_index(drop=True)  # the notebook's test_df, CSV order
    expected = test_df.sample(n=15, random_state=42)["sample_id"].tolist()
    assert [table.column("sample_id")[i].as_py() for i in notebook_rows(table)] == expected


def test_maps_cover_the_centre_crop_the_model_saw(tiny_biomedclip):
    """The notebook feeds biomedclip_preprocess(img): short side resized, centre crop. A portrait image's top and
    bottom bands are outside what the model sees, and its map is placed in the crop, zero outside."""
    from PIL import Image

    from vlmprobe.heatmaps.geometry import centre_crop_box, map_at_image_size, place_map

    assert centre_crop_box(100, 60) == (20, 0, 80, 60) and centre_crop_box(60, 100) == (0, 20, 60, 80)
    image = np.zeros((100, 60, 3), dtype=np.uint8)
    image[:18] = 255  # a white band the crop leaves out
    tensor = tiny_biomedclip.preprocess(Image.fromarray(image))
    black = tiny_biomedclip.preprocess(Image.fromarray(np.zeros_like(image)))
    assert tensor.shape == (3, 160, 160) and torch.allclose(tensor, black, atol=1e-6)
    cam = np.random.default_rng(0).random((160, 160)).astype(np.float32)
    placed = place_map(cam, (100, 60), (20, 0, 80, 60))
    assert placed[:20].max() == 0 and placed[80:].max() == 0 and placed[20:80].min() >= 0 and placed[20:80].max() > 0.5
    data = {"maps": cam[None], "image_height": [100], "image_width": [60], "crop_y0": [20], "crop_x0": [0], "crop_y1": [80], "crop_x1": [60]}
    assert np.array_equal(map_at_image_size(data, 0), placed)
