"""Grad-CAM as Sadman et al.'s notebook draws it (``multilabel: protocol: sadman2025``): its images, layer, targets.

Each piece quotes ``evaluatingBiomedClIP_IUXRAY.ipynb`` (github.com/Nafiz95/BioVLM_Eval_CXR); the readings taken
where the notebook is ambiguous are listed in docs/heatmaps.md ("Under protocol sadman2025").

* **Images** (cell ``4ae980c9``): ``subset_df = test_df_iuxray.sample(n=15, random_state=42)`` -- pandas draws
  ``np.random.RandomState(42).permutation(len(test_df))[:15]`` (``RandomState.choice`` without replacement and
  weights), in that order. :func:`notebook_sample` is that draw on the test rows in the label table's order
  (:func:`label_table_order`: ``test_df_iuxray`` keeps the CSV's row order; the manifest is sorted by sample id).
* **Layer** (cells ``49423127``, ``3200445a``, ``29e7f3ec``: "WITH GRADCAM AND LAYER -3"):
  ``vit.trunk.blocks[-3].attn.proj`` of the open_clip timm tower, its tokens reshaped by ``vit_reshape`` (class
  token dropped, the rest a 14 x 14 grid). The last cell (``150d58d1``) switches to ``blocks[-1].attn.proj``:
  in a class-token-pooled ViT only the class token of the last block reaches the embedding, so the patch tokens
  of ``blocks[-1].attn.proj`` get exactly zero gradient and every map of that cell is empty (pytorch-grad-cam
  scales an all-zero map to zeros); :func:`patch_gradient_norms` measures it. The paper's figure (maps with
  structure) must come from ``[-3]``, the protocol's layer.
* **Targets**: zero-shot ``SimilarityTarget`` = ``(img_emb @ txt.T)[0, cls]`` with ``img_emb = vit(x)``
  (the unnormalised image embedding) and ``txt`` the unnormalised text embeddings of the bare class names
  (:class:`~vlmprobe.heatmaps.scorers.DotProductScorer`); lp / ft ``ClassifierOutputTarget(cls)`` on the
  classifier (encoder + head, :class:`~vlmprobe.heatmaps.scorers.HeadScorer`). Every one of the 14 classes is
  drawn for every image (``K = len(classes)``, ``topdiseases = classes``), in the notebook's class order.
* **Probabilities in the titles** (``custom_inference``): zs ``(cos + 1) / 2`` of the image and text
  embeddings, lp / ft ``sigmoid(logit / 50)`` (``tau=50.0``): :func:`notebook_probabilities`.

``GradCAMCustom.forward`` runs one extra forward / backward before pytorch-grad-cam's own; pytorch-grad-cam
resets its stored activations and gradients and zeroes the model's gradients before its pass, so the extra pass
changes no map and is not repeated here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vlmprobe.errors import VlmprobeError

PROTOCOL = "sadman2025"
SAMPLE_SIZE = 15
SAMPLE_SEED = 42
BLOCK = -3
"""``trunk.blocks[BLOCK].attn.proj``: the notebook's ``targetlayer(vit, 3)`` = ``blocks[-3]``."""
FIGURE_IMAGE = "1196_IM-0131-1001.dcm.png"
"""The image of the notebook's last Grad-CAM figure (cell ``9780b3fc``: ``sample_path = ... filenames[2]``)."""
FIGURE_COLUMNS = ("zs", "ft", "lp")
"""Column order of that figure (``settings = [("Zero-Shot", ...), ("Fine-Tuned", ...), ("LinearProbe", ...)]``)."""
SIGMOID_TAU = 50.0
"""``custom_inference(..., method="sigmoid", tau=50.0)`` for the lp / ft titles."""


def notebook_sample(n_rows: int, n: int = SAMPLE_SIZE, random_state: int = SAMPLE_SEED) -> list[int]:
    """Positions drawn by pandas' ``DataFrame.sample(n=n, random_state=random_state)`` of an ``n_rows``-row frame.

    pandas (``pandas.core.sample.sample``) calls ``RandomState(random_state).choice(n_rows, size=n,
    replace=False)``, which is ``permutation(n_rows)[:n]``; the rows come back in that order. pandas refuses
    ``n > n_rows``; here the whole permutation is returned (every test image, the notebook's order).
    """
    if n_rows <= 0 or n <= 0:
        return []
    return np.random.RandomState(random_state).permutation(n_rows)[: min(n, n_rows)].tolist()


def label_table_order(indices: Sequence[int], source_rows: Sequence[Any] | None) -> list[int]:
    """Manifest row ``indices`` in the notebook's ``test_df`` order: the label CSV's row order (``meta_source_row``,
    as the sadman2025 split reads it), the manifest's order where a table has no such column."""
    if source_rows is None:
        return list(indices)
    return sorted(indices, key=lambda i: (int(source_rows[i]) if source_rows[i] not in (None, "") else i, i))


def find_trunk(image_module) -> tuple[str, Any]:
    """The timm ViT inside an image tower (BiomedCLIP's ``visual.trunk``): ``(dotted path, module)``."""
    for name, module in image_module.named_modules():
        if hasattr(module, "blocks") and hasattr(module, "num_prefix_tokens") and hasattr(module, "patch_embed"):
            return name, module
    return "", None


def notebook_layer(encoder, block: int = BLOCK):
    """``trunk.blocks[block].attn.proj`` of the encoder's timm ViT tower, tokens -> grid (class token dropped).

    Returns a :class:`vlmprobe.heatmaps.maps.CamLayer`. A model without a timm ViT tower, or with fewer
    blocks than ``-block``, has no such layer: the error names the fix.
    """
    from vlmprobe.heatmaps.maps import CamLayer
    from vlmprobe.models.cam_layers import TokenGrid

    name, trunk = find_trunk(encoder.image_module)
    if trunk is None:
        raise VlmprobeError(
            f"Model {encoder.model_id!r}: protocol sadman2025 draws Grad-CAM on trunk.blocks[{block}].attn.proj of a timm ViT "
            "tower (BiomedCLIP's), and this model has none.",
            "name its layer with `heatmaps: target_layers: {<model>: <dotted path>}`, or leave the model out of `heatmaps: models`.",
        )
    if len(trunk.blocks) < -block:
        raise VlmprobeError(
            f"Model {encoder.model_id!r}: its ViT has {len(trunk.blocks)} blocks, so protocol sadman2025's trunk.blocks[{block}] does not exist.",
            "name its layer with `heatmaps: target_layers: {<model>: <dotted path>}`.",
        )
    index = len(trunk.blocks) + block
    grid = getattr(trunk.patch_embed, "grid_size", None)
    return CamLayer(
        trunk.blocks[block].attn.proj,
        f"{name}.blocks.{index}.attn.proj" if name else f"blocks.{index}.attn.proj",
        TokenGrid(trunk.num_prefix_tokens, grid),
        f"protocol sadman2025: trunk.blocks[{block}].attn.proj (the notebook's 'GRADCAM AND LAYER -3')",
    )


TITLE_PROBABILITY = {True: "(cos(img_emb, txt_emb) + 1) / 2", False: "sigmoid(logit / 50)"}
"""What the notebook's titles print, keyed by 'is zero-shot'."""


def notebook_class_order(classes: Sequence[str]) -> list[int]:
    """Indices of ``classes`` in the notebook's ``classes`` list (CheXpert's column order, "No Finding" last); others after, sorted."""
    from vlmprobe.labels import CHEXPERT_CLASSES

    ranked = [name for name in CHEXPERT_CLASSES if name in classes] + sorted(name for name in classes if name not in CHEXPERT_CLASSES)
    return [list(classes).index(name) for name in ranked]


def notebook_targets(true_indices: Sequence[Sequence[int]], order: Sequence[int]) -> list[list[tuple[int, str]]]:
    """Per image every class in the notebook's ``order``: ``(index, 'true')`` for its labels, ``(index, 'absent')`` else."""
    return [[(int(c), "true" if c in set(truth) else "absent") for c in order] for truth in true_indices]


def notebook_probabilities(setting: str, scorer, inputs, batch_size: int = 16, device: str = "cpu") -> np.ndarray:
    """The probabilities the notebook prints in its Grad-CAM titles (``custom_inference``), (N, n_labels).

    zs: ``(cos(img_emb, txt_emb) + 1) / 2``; lp / ft: ``sigmoid(logit / 50)``.
    """
    outputs = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start : start + batch_size].to(device)
            if setting == "zs":
                features = torch.nn.functional.normalize(scorer.image_module(batch).float(), dim=-1)
                text = torch.nn.functional.normalize(scorer.class_embeddings, dim=-1)
                outputs.append(((features @ text.T + 1) / 2).cpu().numpy())
            else:
                outputs.append(torch.sigmoid(scorer(batch).float() / SIGMOID_TAU).cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)


def patch_gradient_norms(scorer, layer_module, inputs, target: int, prefix_tokens: int = 1) -> tuple[float, float]:
    """(norm of the gradient on the patch tokens, on the prefix tokens) of ``layer_module``'s output for output ``target``.

    The check behind the layer choice: zero on the patch tokens means an empty Grad-CAM map.
    """
    captured: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["output"] = output

    handle = layer_module.register_forward_hook(keep)
    try:
        scorer.zero_grad(set_to_none=True)
        inputs = inputs.clone().requires_grad_(True)
        scorer(inputs)[:, target].sum().backward()
    finally:
        handle.remove()
    grad = captured["output"].grad
    return float(grad[:, prefix_tokens:].norm()), float(grad[:, :prefix_tokens].norm())
