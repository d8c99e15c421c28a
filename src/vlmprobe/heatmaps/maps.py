"""Attribution maps (Grad-CAM and friends, via pytorch-grad-cam): which images, which targets, which layer, the maps.

A map answers "which pixels drove this label's score?" (the score of the setting's scorer,
:mod:`vlmprobe.heatmaps.settings`). Per image, maps are drawn for every true label and for the top false
positive (the highest-scoring label the image does not have), so a map of what the model wrongly sees
sits beside what it should.

The attributed layer is the model family's default (:meth:`vlmprobe.models.ModelFamily.cam_layer`; the
table of defaults is in :mod:`vlmprobe.models.cam_layers`). A dotted module path (relative to
``Encoder.image_module``) overrides the default per model (``heatmaps: target_layers:`` in the config);
its reshape is guessed from the output's shape (3-D tokens: the largest square grid, the rest prefix tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.models import family_of
from vlmprobe.models.cam_layers import GuessedReshape, module_name

# Config name (lower case, without '-', '_' and spaces) -> pytorch_grad_cam class name.
METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "gradcamplusplus": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
    "scorecam": "ScoreCAM",
    "gradcamelementwise": "GradCAMElementWise",
    "randomcam": "RandomCAM",
}


def method_class(method: str):
    """The pytorch-grad-cam class for a configured method name ('gradcam', 'GradCAM++', 'eigen-cam', ...)."""
    import pytorch_grad_cam

    key = method.lower().replace("-", "").replace("_", "").replace(" ", "")
    if key not in METHODS:
        raise VlmprobeError(
            f"Unknown attribution method {method!r} (heatmaps: method).",
            f"use one of {sorted(set(METHODS) - {'gradcamplusplus'})}.",
        )
    return getattr(pytorch_grad_cam, METHODS[key])


@dataclass
class CamLayer:
    module: Any
    """The ``torch.nn.Module`` whose output is attributed."""
    name: str
    """Its dotted path inside ``Encoder.image_module`` (recorded in every output)."""
    reshape_transform: Callable[[Any], Any] | None
    rule: str
    """Which rule chose it: a row of the table in :mod:`vlmprobe.models.cam_layers`, or the configured path."""


def target_layer(encoder, override: str | None = None) -> CamLayer:
    """The layer Grad-CAM attributes for ``encoder``: its family's default, or the configured ``override`` path.

    A family without layers (``has_layers = False``) is refused by its ``cam_layer`` whatever is configured.
    """
    family = family_of(encoder.model_id, encoder.spec)
    root = encoder.image_module
    if override and family.has_layers:
        try:
            module = root.get_submodule(override)
        except AttributeError as error:
            names = [name for name, _ in root.named_modules() if name][-8:]
            raise VlmprobeError(
                f"Model {encoder.model_id!r}: heatmaps target layer {override!r} is not a module of its image tower.",
                f"give a dotted path inside Encoder.image_module, e.g. one of {names}.",
            ) from error
        return CamLayer(module, override, GuessedReshape(), "configured (heatmaps: target_layers)")
    module, reshape, rule = family.cam_layer(encoder)
    return CamLayer(module, module_name(root, module), reshape, rule)


def compute_maps(
    scorer,
    layer: CamLayer,
    inputs,
    targets: Sequence[int],
    method: str = "gradcam",
    batch_size: int = 16,
    device: str = "cpu",
) -> np.ndarray:
    """Maps (N, h, w) in [0, 1] at input resolution: input ``i`` attributed for output ``targets[i]``.

    Each map is min-max scaled on its own by pytorch-grad-cam (so maps compare by shape, not by
    size); a map with no positive evidence is all zeros.
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if len(inputs) != len(targets):
        raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
    cam_class = method_class(method)
    scorer = scorer.to(device).eval()
    # Gradients must reach the target layer even when a caller froze the encoder (a linear probe's encoder).
    for parameter in scorer.parameters():
        parameter.requires_grad_(True)
    maps = []
    with cam_class(model=scorer, target_layers=[layer.module], reshape_transform=layer.reshape_transform) as cam:
        if hasattr(cam, "batch_size"):
            cam.batch_size = batch_size
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start : start + batch_size].to(device)
            batch_targets = [ClassifierOutputTarget(int(t)) for t in targets[start : start + batch_size]]
            maps.append(np.asarray(cam(input_tensor=batch, targets=batch_targets), dtype=np.float32))
    height, width = inputs.shape[-2:]
    return np.concatenate(maps) if maps else np.zeros((0, height, width), dtype=np.float32)


def choose_targets(scores: np.ndarray, true_indices: Sequence[Sequence[int]]) -> list[list[tuple[int, str]]]:
    """Per image: (label index, 'true') for each true label, then (index, 'false_positive') for the
    highest-scoring label that is not true (none when every label is true)."""
    chosen = []
    for row, truth in zip(scores, true_indices, strict=True):
        targets = [(int(index), "true") for index in sorted(truth)]
        others = [index for index in range(len(row)) if index not in set(truth)]
        if others:
            targets.append((int(max(others, key=lambda index: row[index])), "false_positive"))
        chosen.append(targets)
    return chosen


def select_images(table, max_annotated: int, n_random: int, seed: int) -> list[int]:
    """Manifest rows to draw maps for: test images with boxes or a mask, up to ``max_annotated``
    (a seeded sample when there are more), plus ``n_random`` other test images (seeded).

    The choice depends only on the manifest, the two limits and the seed, never on the model or
    the setting, so every model and setting of a dataset is drawn on the same images. Rows come
    back in manifest order.
    """
    columns = table.column_names
    split = table.column("split").to_pylist()
    boxes = table.column("boxes").to_pylist() if "boxes" in columns else [None] * table.num_rows
    masks = table.column("annotation_path").to_pylist() if "annotation_path" in columns else [None] * table.num_rows
    test = [i for i, value in enumerate(split) if value == "test"]
    annotated = [i for i in test if boxes[i] or masks[i]]
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(5,)))
    if len(annotated) > max_annotated:
        annotated = sorted(rng.choice(annotated, size=max_annotated, replace=False).tolist()) if max_annotated > 0 else []
    chosen = set(annotated)
    others = [i for i in test if i not in chosen]
    extra = sorted(rng.choice(others, size=min(n_random, len(others)), replace=False).tolist()) if others and n_random > 0 else []
    return sorted(chosen | set(extra))
