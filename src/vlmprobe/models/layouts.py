"""Authors' checkpoint layouts: a file's key names and shapes read cheaply, and the offline check that a file is
the release a family expects (FLAIR's ``vision_model.*``, CXR-CLIP's ``image_encoder.*``, CONCH's ``visual.*``).

A wrong file given to a family (a CXR-CLIP ``.tar`` named as FLAIR's weights) fails here, on the submitting node,
naming the keys it lacks and the keys it has, instead of as a missing-weights error in a GPU job.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vlmprobe.errors import VlmprobeError


def checkpoint_shapes(path: str | Path, key: str | None = None) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape, with safetensors read only up to its header and torch files memory-mapped."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from vlmprobe.models.checkpoints import unreadable_checkpoint, verify_checkpoint

        verify_checkpoint(path)
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
        except Exception as error:  # noqa: BLE001 - any failure of a bad file gets the same clear message
            raise unreadable_checkpoint(path, error) from error
    from vlmprobe.models.checkpoints import load_state_dict

    return {name: tuple(value.shape) for name, value in load_state_dict(path, mmap=True, key=key).items()}


def require_keys(model_id: str, path: str | Path, shapes: dict[str, Any], required: Iterable[str], release: str) -> None:
    """Raise naming what is missing when ``shapes`` (of ``path``) lacks one of ``required`` (a key, or a prefix ending in '.')."""
    missing = [k for k in required if not (any(n.startswith(k) for n in shapes) if k.endswith(".") else k in shapes)]
    if missing:
        heads = sorted({name.split(".")[0] for name in shapes})[:8]
        raise VlmprobeError(
            f"Model {model_id!r}: {str(path)!r} is not {release}: it lacks {missing[:4]} (its keys start with {heads}).",
            f"point `pretrained:` at {release} as published, or use the family that matches this file.",
        )


def require_file(model_id: str, spec: dict[str, Any], suffixes: tuple[str, ...], release: str) -> Path:
    """``spec['pretrained']`` as an existing file, or an error naming the release to stage there."""
    value = spec.get("pretrained")
    if not isinstance(value, str) or not value:
        raise VlmprobeError(f"Model {model_id!r}: `pretrained:` must be the path of {release}.", f"download {release} and set `pretrained:` to it.")
    path = Path(value).expanduser()
    if not path.is_file():
        raise VlmprobeError(
            f"Model {model_id!r}: {release} is not at {value!r}.",
            f"download it on a machine with internet, copy it there (or correct `pretrained:`); expected a {' / '.join(suffixes)} file.",
        )
    return path


def existing(paths: Iterable[str | Path]) -> list[str]:
    """The paths that exist: a family's job inputs. A file not yet staged is left to the offline check
    (``check_model``, which every embedding job waits for) to report with where to download it, rather than to
    Snakemake's bare "missing input files" before any job runs."""
    return [str(p) for p in paths if Path(p).exists()]
