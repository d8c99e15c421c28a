"""Reading weight files safely: safetensors, or ``torch.load(weights_only=True)``; never a plain pickle.

A checkpoint downloaded from the internet is untrusted: a pickle can run code when loaded. Both
routes here only ever build tensors and plain containers; foreign objects beside the tensors (training
arguments, numpy scalars, OmegaConf configs) are read as inert data (:mod:`vlmprobe.models.inert_pickle`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmprobe.errors import VlmprobeError
from vlmprobe.models.inert_pickle import load_data_only, set_aside

log = logging.getLogger(__name__)


def sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise missing_weights_file(path)


WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".pkl", ".npz", ".h5", ".msgpack")


def missing_weights_file(path: str | Path, model_id: str | None = None, folder_fix: str | None = None) -> VlmprobeError:
    """The error for a ``pretrained:`` that is not a file: a folder (named as one, with the weight files
    it holds) or a path that does not exist. ``folder_fix`` is the family's own way to read a folder."""
    path = Path(path)
    who = f"Model {model_id!r}: checkpoint" if model_id else "Checkpoint"
    if path.is_dir():
        inside = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES)
        listing = f"; weight files inside: {inside[:6]}" if inside else "; it holds no weights file (.safetensors, .pt, .pth, .bin, .ckpt)"
        return VlmprobeError(
            f"{who} path {str(path)!r} is a folder, not a weights file{listing}.",
            (folder_fix + ", or " if folder_fix else "")
            + "set `pretrained:` to the weights file itself"
            + (f" (e.g. {str(path / inside[0])!r})." if inside else "."),
        )
    return VlmprobeError(
        f"{who} file {str(path)!r} does not exist.",
        "copy the weights there (pre-stage them on the cluster's shared filesystem) or correct `pretrained:` in config.yaml.",
    )


def is_torchscript_archive(path: Path) -> bool:
    """A ``torch.jit.save`` archive: a zip whose entries hold ``constants.pkl`` and the model's ``code/``."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(name.endswith("/constants.pkl") for name in names) and any("/code/" in name for name in names)


def torchscript_error(path: Path) -> VlmprobeError:
    return VlmprobeError(
        f"Checkpoint {str(path)!r} is a TorchScript archive (written by torch.jit.save: a compiled program with its "
        "weights), not a state dict; vlmprobe builds the architecture itself and loads only weights into it.",
        "if you trust the file, extract its weights once: `import torch; torch.save(torch.jit.load(PATH, map_location='cpu')"
        ".state_dict(), 'weights.pt')`, and set `pretrained:` to weights.pt (the keys are the scripted module's own names).",
    )


def check_weight_values(path: str | Path, tensors: Iterable[tuple[str, Any]]) -> None:
    """Refuse a file whose weights cannot be the trained model's: NaN or Inf in a floating tensor
    (named, with how many values), or no floating-point tensor at all (weights saved as integers).

    A property of the file, so it is said from the file, before a model is built or an image read.
    """
    non_finite: list[str] = []
    integer: list[str] = []
    floating = 0
    for name, value in tensors:
        if not _is_tensor(value):
            continue
        if value.dtype.is_floating_point or value.dtype.is_complex:
            floating += 1
            import torch

            finite = torch.isfinite(value)
            if not bool(finite.all()):
                bad = value[~finite]
                nan = int(torch.isnan(bad).sum())
                non_finite.append(f"{name} ({nan} NaN, {bad.numel() - nan} Inf of {value.numel()})")
        else:
            integer.append(f"{name} ({str(value.dtype).removeprefix('torch.')})")
    if non_finite:
        raise VlmprobeError(
            f"Checkpoint {str(path)!r} has NaN or Inf values in {len(non_finite)} tensor(s): {non_finite[:5]}; "
            "the file itself is damaged (training diverged, or it was written from a broken run), not the precision it is run at.",
            "use an earlier or the published checkpoint (or re-save it from a healthy run).",
        )
    if integer and not floating:
        raise VlmprobeError(
            f"Checkpoint {str(path)!r} holds only integer tensors ({len(integer)}, e.g. {integer[:3]}): no floating-point "
            "weights, as written by a quantized export or a cast like `.long()`.",
            "save the float weights (model.state_dict() before quantizing or casting) as .pt or .safetensors.",
        )


def refuse_integer_weights(kept: dict[str, Any], own: dict[str, Any], path: str | Path, architecture: str) -> None:
    """A learned (floating) weight of the architecture given integer values by the file is not a cast
    to record but a wrong file: casting would embed with truncated weights without a word."""
    integer = [
        f"{name} ({str(value.dtype).removeprefix('torch.')})"
        for name, value in kept.items()
        if (own[name].dtype.is_floating_point or own[name].dtype.is_complex) and not (value.dtype.is_floating_point or value.dtype.is_complex)
    ]
    if integer:
        raise VlmprobeError(
            f"Checkpoint {str(path)!r} gives {len(integer)} floating-point weight(s) of {architecture!r} integer values, "
            f"e.g. {integer[:3]}: a quantized or integer-cast export, not the trained weights.",
            "save the float weights (model.state_dict() before quantizing or casting) as .pt or .safetensors.",
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


def read_checkpoint(path: str | Path, mmap: bool = False) -> Any:
    """The file's contents as written (a state dict, or a container holding one), read safely."""
    path = Path(path)
    _require_file(path)
    if is_torchscript_archive(path):
        raise torchscript_error(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return load_data_only(lambda: _torch_load(path, mmap))  # argparse / numpy / OmegaConf entries set aside
    except Exception as error:  # noqa: BLE001 - every failure mode of a bad file gets the same clear message
        raise unreadable_checkpoint(path, error) from error


def load_state_dict(path: str | Path, mmap: bool = False, key: str | None = None) -> dict[str, Any]:
    """Load the state dict a weights file holds, unwrapped from its container (see :func:`unwrap_checkpoint`).
    ``mmap`` maps torch files instead of reading them (for checks)."""
    return unwrap_checkpoint(read_checkpoint(path, mmap), path, key)[0]


def verify_checkpoint(path: str | Path, key: str | None = None) -> int:
    """Check that ``path`` is a readable, safe weights file holding tensors; return how many.

    Cheap enough for the offline model check on the submitting node: a safetensors file's header is
    length-checked and a torch file is memory-mapped, so a truncated, corrupt or pickled checkpoint
    fails in seconds rather than after a wait in a GPU queue. Its values are then read once, one tensor
    at a time (:func:`check_weight_values`: NaN / Inf, weights saved as integers), about a second per GB,
    and remembered for the process (a job checks before it loads). Whether the tensors fit the
    architecture is checked when the model is built (:func:`load_checkpoint_into`).
    """
    path = Path(path)
    try:
        stat = path.stat()
        memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, key)
    except OSError:
        memo = None
    if memo in _VERIFIED:  # one job checks a file more than once (check_spec, then load_encoder); reading it once is enough
        return _VERIFIED[memo]
    count = _verify_checkpoint(path, key)
    if memo is not None:
        _VERIFIED[memo] = count
    return count


_VERIFIED: dict[tuple, int] = {}


def _verify_checkpoint(path: Path, key: str | None) -> int:
    if path.suffix != ".safetensors":
        state = load_state_dict(path, mmap=True, key=key)
        check_weight_values(path, state.items())
        return len(state)
    _require_file(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            count = len(list(handle.keys()))
    except Exception as error:  # noqa: BLE001
        raise unreadable_checkpoint(path, error) from error
    if not count:
        raise VlmprobeError(f"Checkpoint {str(path)!r} holds no tensors.", "save the model's state_dict().")
    with safe_open(str(path), framework="pt") as handle:  # one tensor in memory at a time
        check_weight_values(path, ((name, handle.get_tensor(name)) for name in handle.keys()))
    return count


# --- fitting a checkpoint to an architecture -------------------------------------------------------
#
# Published checkpoints rarely hold exactly ``model.state_dict()``: they come wrapped in training
# containers, under wrapper prefixes, without buffers that carry no learned value, with a classifier
# of another size, beside an EMA copy, in half precision. Each of these is undone here, one rule each,
# and recorded; whatever is still left over is a real mismatch and fails with the keys named.

#: Container keys tried, in order, when a file holds more than a state dict. EMA copies first, as
#: timm's own ``load_state_dict(use_ema=True)`` does: they are the weights its authors evaluate (the
#: DINO teacher is the EMA of the student). ``checkpoint_key:`` in a model spec overrides the choice.
EMA_KEYS = ("state_dict_ema", "model_ema", "ema_state_dict", "ema", "teacher")
WEIGHT_KEYS = ("state_dict", "model", "model_state_dict", "module", "network", "net", "weights", "params", "student")


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def unwrap_checkpoint(checkpoint: Any, path: str | Path, key: str | None = None) -> tuple[dict[str, Any], str | None]:
    """(the state dict inside ``checkpoint``, the dotted container path it came from or None).

    ``key`` names the container explicitly (dotted for nesting: ``"model.ema"``); without it the first
    of :data:`EMA_KEYS` then :data:`WEIGHT_KEYS` that holds a dict is taken, level by level, until a
    level holds tensors. Non-tensor entries beside the tensors (epoch counters, config) are dropped.
    """
    taken: list[str] = []
    wanted = key.split(".") if key else None
    while isinstance(checkpoint, dict):
        if wanted:
            step = wanted.pop(0)
            if step not in checkpoint:
                raise VlmprobeError(
                    f"Checkpoint {str(path)!r} has no {'.'.join([*taken, step])!r}; at that level it holds {sorted(map(str, checkpoint))[:12]}.",
                    "set the model's `checkpoint_key:` to the entry that holds the weights (dotted for nested entries), or remove it.",
                )
        elif any(_is_tensor(value) for value in checkpoint.values()):
            break
        else:
            step = next((k for k in (*EMA_KEYS, *WEIGHT_KEYS) if isinstance(checkpoint.get(k), dict)), None)
            if step is None:
                break
        checkpoint = checkpoint[step]
        taken.append(step)
    state = {k: v for k, v in checkpoint.items() if _is_tensor(v)} if isinstance(checkpoint, dict) else {}
    if not state:
        held = sorted(map(str, checkpoint))[:12] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise VlmprobeError(
            f"Checkpoint {str(path)!r} holds no state dict (found {held}).",
            "save the model's state_dict(), or set the model's `checkpoint_key:` to the entry that holds it.",
        )
    return state, ".".join(taken) or None


def _best_prefix(state_keys: list[str], model_keys: set[str], prefer_ema: bool = True) -> str:
    """The key prefix (``module.``, ``model.``, ``backbone.``, ``module.encoder.``, ...) whose removal
    makes the most checkpoint keys model keys; '' when stripping nothing fits best."""
    counts: dict[str, int] = {}
    for key in state_keys:
        parts = key.split(".")
        for i in range(len(parts)):
            prefix = ".".join(parts[:i]) + "." if i else ""
            if key[len(prefix) :] in model_keys:
                counts[prefix] = counts.get(prefix, 0) + 1
    if not counts:
        return ""
    # most matches; then an EMA copy's prefix (as for containers); then the shortest
    return max(counts, key=lambda p: (counts[p], ("ema" in p) == prefer_ema, -len(p)))


def _is_construction_buffer(value: Any) -> bool:
    """Integer and boolean buffers (``num_batches_tracked``, position and relative-position indices,
    attention masks) are made by the architecture's constructor, not learned: a checkpoint may lack them."""
    import torch

    return value.dtype == torch.bool or not (value.dtype.is_floating_point or value.dtype.is_complex)


@dataclass
class CheckpointFit:
    """How a checkpoint was fitted to the architecture; :meth:`as_metadata` goes into every output's metadata."""

    container: str | None = None
    prefix: str = ""
    outside_prefix: list[str] = field(default_factory=list)
    filter: str | None = None
    cast: dict[str, int] = field(default_factory=dict)
    filled_buffers: list[str] = field(default_factory=list)
    dropped_buffers: list[str] = field(default_factory=list)
    dropped_head: list[str] = field(default_factory=list)
    not_in_encoder: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    set_aside: list[str] = field(default_factory=list)
    """Foreign objects beside the tensors (training arguments, numpy scalars, configs), read as inert data."""

    @property
    def problems(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.mismatched)

    def as_metadata(self) -> dict[str, Any]:
        def listed(keys: list[str]) -> dict[str, Any]:
            return {"count": len(keys), "examples": keys[:5]}

        return {
            "container": self.container,
            "stripped_prefix": self.prefix or None,
            "filter": self.filter,
            "cast_from": dict(sorted(self.cast.items())),
            "filled_construction_buffers": listed(self.filled_buffers),
            "dropped_construction_buffers": listed(self.dropped_buffers),
            "dropped_head": listed(self.dropped_head),
            "ignored_not_in_encoder": listed(self.not_in_encoder + self.outside_prefix),
            "set_aside_objects": self.set_aside,
        }


def _classify(own: dict[str, Any], state: dict[str, Any], head_prefixes: tuple[str, ...], fit: CheckpointFit) -> dict[str, Any]:
    """Sort every key into loaded / harmless (recorded on ``fit``) / real mismatch; return what loads."""
    top_level = {key.split(".")[0] for key in own}
    kept: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith(head_prefixes):
            fit.dropped_head.append(key)
        elif key in own:
            if tuple(value.shape) != tuple(own[key].shape):
                fit.mismatched.append((key, tuple(value.shape), tuple(own[key].shape)))
            else:
                kept[key] = value
        elif _is_construction_buffer(value):
            fit.dropped_buffers.append(key)
        elif key.split(".")[0] not in top_level:
            fit.not_in_encoder.append(key)  # a decoder, projector, text tower or loss the image encoder has none of
        else:
            fit.unexpected.append(key)  # inside a part the encoder has: another depth or layout
    for key, value in own.items():
        if key not in state and not key.startswith(head_prefixes):
            (fit.filled_buffers if _is_construction_buffer(value) else fit.missing).append(key)
    if fit.missing:  # with learned weights missing, keys of "other parts" may be those weights under other names
        fit.unexpected += fit.not_in_encoder
        fit.not_in_encoder = []
    return kept


def _fit(module, checkpoint, head_prefixes, filter_fn, key, path) -> tuple[CheckpointFit, dict[str, Any]]:
    """Match ``checkpoint`` (a state dict or a container of one) to ``module``'s keys, loading nothing:
    unwrap the container; strip the wrapper prefix; apply the library's own remapping ``filter_fn``
    (kept if it fits at least as well as without it); classify each key. Returns (fit, what loads)."""
    state, container = unwrap_checkpoint(checkpoint, path, key)
    own = module.state_dict()
    prefix = _best_prefix(list(state), set(own))
    outside = [k for k in state if not k.startswith(prefix)]
    state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    tries: list[tuple[CheckpointFit, dict[str, Any]]] = []
    candidates = [(None, state)]
    if filter_fn is not None:
        name = f"{getattr(filter_fn, '__module__', '')}.{getattr(filter_fn, '__qualname__', filter_fn)}"
        try:
            candidates.insert(0, (name, filter_fn(dict(state), module)))
        except Exception as error:  # noqa: BLE001 - a filter that cannot read these keys simply does not apply
            log.debug("checkpoint filter %s does not apply: %s", name, error)
    for name, candidate in candidates:
        fit = CheckpointFit(container=container, prefix=prefix, outside_prefix=outside, filter=name)
        kept = _classify(own, candidate, head_prefixes, fit)
        tries.append((fit, kept))
    return min(tries, key=lambda t: t[0].problems)  # the filtered try first: it wins ties


def load_checkpoint_into(
    module: Any,
    path: str | Path,
    architecture: str,
    *,
    head_prefixes: tuple[str, ...] = (),
    filter_fn: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None,
    key: str | None = None,
    alternatives: Callable[[dict[str, Any]], list[str]] | None = None,
) -> CheckpointFit:
    """Load the weights file ``path`` into ``module`` through :func:`_fit`'s rules.

    A real mismatch (a learned weight missing, a key inside the encoder's own parts unexpected, a
    shape that differs) fails with the keys named; ``alternatives(state)`` may name architectures
    whose keys the checkpoint does fit, which the message then suggests.
    """
    checkpoint = read_checkpoint(path)
    fit, kept = _fit(module, checkpoint, head_prefixes, filter_fn, key, path)
    fit.set_aside = set_aside(checkpoint)
    if fit.problems:
        raise _mismatch_error(fit, path, architecture, alternatives, checkpoint)
    own = module.state_dict()
    refuse_integer_weights(kept, own, path, architecture)
    for name, value in kept.items():
        if value.dtype != own[name].dtype:
            source = str(value.dtype).removeprefix("torch.")
            fit.cast[source] = fit.cast.get(source, 0) + 1
            kept[name] = value.to(own[name].dtype)
    module.load_state_dict(kept, strict=False)  # every key not in ``kept`` is recorded on ``fit`` as harmless
    if fit.container or fit.prefix or fit.filter or fit.cast or fit.filled_buffers or fit.dropped_head or fit.not_in_encoder or fit.set_aside:
        log.info("checkpoint %s fitted to %s: %s", path, architecture, fit.as_metadata())
    return fit


def _mismatch_error(fit: CheckpointFit, path, architecture: str, alternatives, checkpoint: Any) -> VlmprobeError:
    details = []
    if fit.missing:
        details.append(f"{len(fit.missing)} learned weight(s) missing, e.g. {fit.missing[:3]}")
    if fit.unexpected:
        details.append(f"{len(fit.unexpected)} unexpected key(s) inside the encoder's own layers, e.g. {fit.unexpected[:3]}")
    if fit.mismatched:
        shown = [f"{k}: checkpoint {list(a)} vs model {list(b)}" for k, a, b in fit.mismatched[:3]]
        details.append(f"{len(fit.mismatched)} shape mismatch(es), e.g. {shown}")
    undone = [f"used {fit.container!r}"] if fit.container else []
    undone += [f"stripped prefix {fit.prefix!r}"] if fit.prefix else []
    if fit.dropped_head:
        undone.append(f"dropped {len(fit.dropped_head)} head key(s)")
    problem = (
        f"Checkpoint {str(path)!r} does not fit architecture {architecture!r}"
        f"{' (after: ' + ', '.join(undone) + ')' if undone else ''}: {'; '.join(details)}."
    )
    fitting = []
    if alternatives is not None:
        try:
            fitting = [name for name in alternatives(checkpoint) if name != architecture]  # the file as read once
        except VlmprobeError:
            raise
        except Exception as error:  # noqa: BLE001 - the suggestion is a courtesy; the mismatch is the error
            log.debug("could not compute fitting architectures: %s", error)
    if fitting:
        fix = f"its keys and shapes fit {fitting[:5]}: set the model's `name` to the architecture it was trained with."
    elif not fit.mismatched and not fit.unexpected:
        fix = (
            "every shape that both have matches, so the architecture is likely right but the file holds another part "
            "or a partial copy: check which entry holds the encoder (`checkpoint_key:`) or re-export the full state dict."
        )
    else:
        fix = "use the checkpoint of this architecture, or set the model's `name` to the architecture the checkpoint was trained with."
    return VlmprobeError(problem, fix)


def architectures_fitting(checkpoint: Any, names: list[str], build: Callable[[str], tuple[Any, tuple[str, ...]]]) -> list[str]:
    """Which of ``names`` the checkpoint fits; ``build(name)`` gives (module, head prefixes) and runs on
    the meta device, so trying a few dozen architectures costs no memory and little time."""
    import torch

    fitting = []
    for name in names:
        try:
            with torch.device("meta"):
                module, heads = build(name)
        except Exception:  # noqa: BLE001 - a candidate that cannot be built cannot fit
            continue
        if not _fit(module, checkpoint, heads, None, None, "<candidate>")[0].problems:
            fitting.append(name)
    return fitting


def close_names(name: str, known: list[str], n: int = 16) -> list[str]:
    """Candidate architectures to try a checkpoint against: close spellings and the same stem."""
    import difflib

    stem = re.split(r"[_\-.\d]", name, maxsplit=1)[0]
    close = difflib.get_close_matches(name, known, n=n, cutoff=0.4)
    same_stem = [k for k in known if stem and k.startswith(stem) and k not in close]
    return (close + same_stem)[: n * 2]
