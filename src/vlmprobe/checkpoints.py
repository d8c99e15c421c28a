"""Reading weight files safely: safetensors, or ``torch.load(weights_only=True)``; never a plain pickle.

A checkpoint downloaded from the internet is untrusted: a pickle can run code when loaded. Both
routes here only ever build tensors and plain containers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from vlmprobe.errors import VlmprobeError


def sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """Load a state dict from ``.safetensors`` or a torch file, unwrapping ``state_dict``/``model`` keys
    and DataParallel ``module.`` prefixes."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise VlmprobeError(
            f"Checkpoint file {str(path)!r} does not exist.",
            "copy the weights there (pre-stage them on the cluster's shared filesystem) or correct `pretrained:` in config.yaml.",
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - every failure mode of a bad file gets the same clear message
        text = str(error)
        if "weights_only" in text or "Unsupported global" in text or "Weights only load failed" in text:
            raise VlmprobeError(
                f"Checkpoint {str(path)!r} holds arbitrary Python objects (a pickle), which vlmprobe refuses to "
                "load because unpickling can execute code.",
                "re-save it as a plain state dict (torch.save(model.state_dict(), ...)) or as .safetensors.",
            ) from error
        raise VlmprobeError(
            f"Checkpoint {str(path)!r} is not a readable weights file ({type(error).__name__}: {text[:200]}).",
            "re-download or re-save the checkpoint (it may be truncated or corrupt).",
        ) from error
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise VlmprobeError(f"Checkpoint {str(path)!r} holds no state dict.", "save the model's state_dict().")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


def load_into(module: Any, state: dict[str, Any], path: str | Path, architecture: str, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """``load_state_dict(strict)``, turning an architecture mismatch into an error that says so."""
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(ignore_prefixes)]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        details = []
        if missing:
            details.append(f"{len(missing)} missing key(s) e.g. {missing[:3]}")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected key(s) e.g. {unexpected[:3]}")
        if mismatched:
            details.append(f"{len(mismatched)} shape mismatch(es) e.g. {mismatched[:3]}")
        raise VlmprobeError(
            f"Checkpoint {str(path)!r} does not fit architecture {architecture!r}: {'; '.join(details)}.",
            "set the model's `name` to the architecture the checkpoint was trained with, or use the matching checkpoint.",
        )
    module.load_state_dict(state, strict=not ignore_prefixes)
