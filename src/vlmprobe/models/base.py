"""The model plug-in interface: a family checks a spec offline, then loads an :class:`Encoder`.

A *spec* is one model's block in ``config.yaml`` (``family``, ``name``, ``pretrained``, ...). A
*family* (one module in this package, registered with :func:`register_family`) knows one library.
Everything downstream sees only :class:`Encoder`: the image tower as a ``torch.nn.Module``, the
model's own preprocessing, and a text encoder where the model has a text tower.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmprobe.errors import VlmprobeError

FAMILIES: dict[str, ModelFamily] = {}
# Why a model gets no zero-shot setting: the plan's skip reason and the zero-shot stage's error.
NO_TEXT_TOWER = "no text tower (zero-shot needs a family that declares one, e.g. open_clip)"
# The fix every family gives when weights are not available offline.
OFFLINE_FIX = (
    "on a machine with internet, download the weights (e.g. `huggingface-cli download <repo>` or open_clip's "
    "download on first use), copy them to the cluster, and point `name: local-dir:<folder>` or `pretrained: <file>` at them."
)


@dataclass
class Encoder:
    model_id: str
    family: str
    spec: dict[str, Any]
    image_module: Any
    """``torch.nn.Module``: preprocessed batch (B, 3, H, W) -> embeddings (B, D); fine-tuning trains it."""
    preprocess: Callable[[Any], Any]
    """PIL RGB image -> tensor (3, H, W): the model's own resize, crop and normalisation."""
    preprocess_info: dict[str, Any]
    embed_dim: int
    checkpoint_sha256: str | None = None
    checkpoint_fit: dict[str, Any] | None = None
    """What was done to fit a checkpoint file to the architecture (:class:`vlmprobe.models.checkpoints.CheckpointFit`)."""
    text_encoder: Callable[[Sequence[str]], Any] | None = None
    """Texts -> text embeddings (N, D) in the image embedding space, for zero-shot."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Family-specific handles (e.g. the full open_clip model, Grad-CAM target layers)."""

    @property
    def has_text_tower(self) -> bool:
        return self.text_encoder is not None

    def encode_image(self, batch: Any) -> Any:
        return self.image_module(batch)

    def encode_text(self, texts: Sequence[str]) -> Any:
        if self.text_encoder is None:
            raise VlmprobeError(f"Model {self.model_id!r} ({self.family}) has no text tower.", "use an open_clip model for zero-shot.")
        return self.text_encoder(texts)


class ModelFamily:
    """Base class of a model family; subclasses set ``name`` and implement ``check`` and ``load``.

    A family also declares what its models can do, so the job plan (:mod:`vlmprobe.plan`) and the stages
    ask the family instead of keeping lists of family names:

    - ``has_text_tower``: texts embed into the image embedding space (zero-shot classification, zero-shot Grad-CAM);
    - ``trainable``: the image tower is a ``torch.nn.Module`` whose weights fine-tuning updates;
    - ``has_layers``: the image tower has layers Grad-CAM can attribute (:meth:`cam_layer` finds the default one);
    - :meth:`weight_files` / :meth:`input_files`: the local files a spec reads;
    - :meth:`preprocess_without_weights`: the model's preprocessing, known before the model loads, which the
      pixel cache splits into geometry and normalisation (:mod:`vlmprobe.models.pixel_split`).
    """

    name: str = ""
    has_text_tower: bool = False
    trainable: bool = False
    has_layers: bool = True

    def check(self, model_id: str, spec: dict[str, Any]) -> None:
        """Raise :class:`VlmprobeError` if the spec cannot work, using no network and no weights."""
        raise NotImplementedError

    def load(self, model_id: str, spec: dict[str, Any], device: str = "cpu") -> Encoder:
        raise NotImplementedError

    def cam_layer(self, encoder: Encoder) -> tuple[Any, Callable[[Any], Any] | None, str]:
        """The layer Grad-CAM attributes by default: (the ``torch.nn.Module`` inside ``encoder.image_module``,
        the reshape of its output to (B, C, h, w) or None when it is already NCHW, the rule that chose it).

        This default is the last ``Conv2d``; families with transformers or known layouts override it
        (the table in :mod:`vlmprobe.models.cam_layers`).
        """
        if not self.has_layers:
            raise VlmprobeError(
                f"Model {encoder.model_id!r} ({self.name}) has no layers, so no Grad-CAM map.",
                "leave it out of `heatmaps: models`.",
            )
        from vlmprobe.models.cam_layers import last_conv

        return last_conv(encoder.image_module), None, f"{encoder.family}: last Conv2d"

    def preprocess_without_weights(self, model_id: str, spec: dict[str, Any]) -> Any | None:
        """The transform :meth:`load` gives ``Encoder.preprocess``, built from the spec alone (no weights, no
        network), or None when only loading the model tells it.

        This is the one place a family declares its geometry: the job plan groups models whose transforms
        share their geometric part into one pixel cache (decoded once per dataset); None (the default, safe for
        any family) means the embedding decodes every image itself, as before the pixel cache. The embedding
        job checks the loaded model's own transform against the cache, so a wrong answer here costs a
        decode, never a wrong number.
        """
        return None

    def weight_files(self, spec: dict[str, Any]) -> list[str]:
        """Local files the spec reads weights from (they become inputs of the embedding job)."""
        pretrained = spec.get("pretrained")
        if isinstance(pretrained, str) and not pretrained.startswith(("hf-hub:", "local-dir:")) and looks_like_path(pretrained):
            return [pretrained]
        return []

    def input_files(self, spec: dict[str, Any]) -> list[str]:
        """Every local file the spec reads (weights and configuration): inputs of the jobs that load the
        model, so replacing one re-runs them."""
        return self.weight_files(spec)


def register_family(cls: type[ModelFamily]) -> type[ModelFamily]:
    FAMILIES[cls.name] = cls()
    return cls


def looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or Path(value).suffix in {".pt", ".pth", ".bin", ".safetensors", ".ckpt"}


def unknown_name_error(kind: str, value: str, known: Sequence[str], model_id: str, fix: str) -> VlmprobeError:
    close = difflib.get_close_matches(value, list(known), n=5, cutoff=0.5)
    hint = f" Did you mean {close}?" if close else ""
    return VlmprobeError(f"Model {model_id!r}: unknown {kind} {value!r}.{hint}", fix)


def family_of(model_id: str, spec: dict[str, Any]) -> ModelFamily:
    from vlmprobe.models import load_families

    load_families()
    family = spec.get("family")
    if family not in FAMILIES:
        raise unknown_name_error("family", str(family), sorted(FAMILIES), model_id, f"set `family:` to one of {sorted(FAMILIES)}.")
    return FAMILIES[family]


def check_spec(model_id: str, spec: dict[str, Any]) -> None:
    """The offline check: the family's own (names, tags, files exist), then every local weights file is
    opened safely and cheaply, so a corrupt, truncated or pickled checkpoint fails before any job is queued."""
    from vlmprobe.models.checkpoints import verify_checkpoint

    family = family_of(model_id, spec)
    family.check(model_id, spec)
    for path in family.weight_files(spec):
        verify_checkpoint(path, spec.get("checkpoint_key"))


def load_encoder(model_id: str, spec: dict[str, Any], device: str = "cpu") -> Encoder:
    check_spec(model_id, spec)  # also vets weights files a library would load itself (open_clip's local-dir)
    return family_of(model_id, spec).load(model_id, spec, device)


def describe_transform(transform: Any) -> str:
    return " -> ".join(repr(step) for step in getattr(transform, "transforms", [transform]))
