"""Reading weight files safely: safetensors, or ``torch.load(weights_only=True)``; never a plain pickle.

A checkpoint downloaded from the internet is untrusted: a pickle can run code when loaded. Both
routes here only ever build tensors and plain containers.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from vlmprobe.errors import VlmprobeError


def sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise VlmprobeError(
            f"Checkpoint file {str(path)!r} does not exist.",
            "copy the weights there (pre-stage them on the cluster's shared filesystem) or correct `pretrained:` in config.yaml.",
        )


def _starts_like_a_pickle(path: Path) -> bool:
    """Pickle protocols 2-5 open with PROTO (0x80) and the protocol number."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def refused_pickle(error: Exception) -> bool:
    """Whether ``torch.load(weights_only=True)`` refused to call something (the file holds a code-running pickle)."""
    text = str(error)
    return re.search(r"GLOBAL ([\w.]+)", text) is not None or "Unsupported global" in text


def unreadable_checkpoint(path: Path, error: Exception) -> VlmprobeError:
    """The one message for a weights file that cannot be read: refused pickle, or corrupt/truncated file."""
    text = str(error)
    called = re.search(r"GLOBAL ([\w.]+)", text)
    if refused_pickle(error) or ("Weights only load failed" in text and _starts_like_a_pickle(path)):
        what = f" (it would call {called.group(1)})" if called else ""
        return VlmprobeError(
            f"Checkpoint {str(path)!r} holds arbitrary Python objects (a pickle){what}, which vlmprobe refuses to "
            "load because unpickling can execute code.",
            "re-save it as a plain state dict (torch.save(model.state_dict(), ...)) or as .safetensors.",
        )
    if "Weights only load failed" in text:
        # torch's text suggests weights_only=False, exactly what must not be done with an untrusted file
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        text = f"neither a torch zip file nor a weights pickle: {detail.group(1) if detail else 'unknown contents'}"
    return VlmprobeError(
        f"Checkpoint {str(path)!r} is not a readable weights file ({type(error).__name__}: {text[:200]}).",
        "re-download or re-save the checkpoint (it may be truncated or corrupt).",
    )


def _torch_load(path: Path, mmap: bool) -> Any:
    import torch

    if mmap:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            # files written before torch's zip format cannot be memory-mapped; read them the ordinary (still safe) way
            if "mmap" not in str(error):
                raise
    return torch.load(path, map_location="cpu", weights_only=True)


def load_state_dict(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """Load a state dict from ``.safetensors`` or a torch file, unwrapping ``state_dict``/``model`` keys
    and DataParallel ``module.`` prefixes. ``mmap`` maps torch files instead of reading them (for checks)."""
    path = Path(path)
    _require_file(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = _torch_load(path, mmap)
    except Exception as error:  # noqa: BLE001 - every failure mode of a bad file gets the same clear message
        raise unreadable_checkpoint(path, error) from error
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise VlmprobeError(f"Checkpoint {str(path)!r} holds no state dict.", "save the model's state_dict().")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


def verify_checkpoint(path: str | Path) -> int:
    """Check that ``path`` is a readable, safe weights file holding tensors; return how many.

    Cheap enough for the offline model check on the submitting node: a safetensors file is read
    only up to its (length-checked) header and a torch file is memory-mapped, so a truncated,
    corrupt or pickled checkpoint fails in seconds rather than after a wait in a GPU queue.
    Whether the tensors fit the architecture is checked when the model is built (:func:`load_into`).
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        return len(load_state_dict(path, mmap=True))
    _require_file(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            count = len(list(handle.keys()))
    except Exception as error:  # noqa: BLE001
        raise unreadable_checkpoint(path, error) from error
    if not count:
        raise VlmprobeError(f"Checkpoint {str(path)!r} holds no tensors.", "save the model's state_dict().")
    return count


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
