"""Data-only unpickling of research checkpoints: foreign objects beside the tensors become inert placeholders.

Research releases save more than a state dict: an ``argparse.Namespace`` of training arguments (DeiT, DINO,
MAE), numpy scalars (``best_acc``), OmegaConf configs (CXR-CLIP). ``torch.load(weights_only=True)`` refuses
every one of them. Here such a file is read by the same weights-only unpickler of torch, with each foreign
global it names registered as an *inert placeholder*: a class that records what the pickle handed it and
runs none of the foreign code (nothing is imported, no constructor, ``__setstate__`` or ``__reduce__`` of
the original class is ever called). Only the tensors are used; :func:`set_aside` names what was put aside.

What stays refused: a pickle that would *call* a foreign function or class to build a value (``os.system``,
``subprocess.Popen``, ``builtins.eval``, ``functools.partial``, ...). Rebuilding a plain object does not
call its class (protocol 2+ writes ``NEWOBJ`` + ``BUILD``, which become a placeholder holding the state);
a call (``REDUCE``) is allowed only for :data:`DATA_CALLS`, the constructors that numpy, the standard
library and configuration libraries use to rebuild plain values, and even those only make a placeholder.
Tensors built through foreign code (a tensor subclass from the pickle's own module) are refused by torch's
rebuild step, since a placeholder is not a tensor type.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

#: Globals a data pickle calls (``REDUCE``) to rebuild a plain value; each call only makes a placeholder.
DATA_CALLS = frozenset(
    {
        # numpy scalars, dtypes and arrays (``best_acc = np.float64(...)``)
        "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.dtype",
        "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray",
        # the standard library's own ways of pickling plain values
        "copyreg._reconstructor", "collections.defaultdict", "collections.deque",
        "builtins.set", "builtins.frozenset", "builtins.complex", "builtins.slice", "builtins.range",
        "builtins.bytearray", "builtins.list", "builtins.dict", "builtins.tuple", "builtins.int",
        "builtins.float", "builtins.str", "builtins.bool", "builtins.object",
        "pathlib.Path", "pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.PurePosixPath", "pathlib.PureWindowsPath",
        "datetime.datetime", "datetime.date", "datetime.time", "datetime.timedelta", "datetime.timezone",
        "decimal.Decimal", "fractions.Fraction", "uuid.UUID", "argparse.Namespace", "types.SimpleNamespace",
    }
)
#: Configuration libraries whose classes only hold values (OmegaConf nodes, EasyDict, ml_collections, yacs).
DATA_MODULES = ("omegaconf.", "easydict.", "ml_collections.", "yacs.", "addict.", "munch.", "typing.")

_UNSUPPORTED = re.compile(r"Unsupported global: GLOBAL ([\w.]+) was not an allowed global")
#: Enough for any real configuration object; a file naming more foreign globals is not a weights file.
MAX_FOREIGN_GLOBALS = 256


def may_call(name: str) -> bool:
    """Whether the pickle may call global ``name`` (and get an inert placeholder back)."""
    return name in DATA_CALLS or name.startswith(DATA_MODULES)


class Inert:
    """A foreign object as the pickle described it: the global's name, the arguments, the state. Inert."""

    global_name = ""

    def __new__(cls, *args: Any, **kwargs: Any):  # NEWOBJ: cls.__new__(cls, *args), as pickle rebuilds an object
        instance = object.__new__(cls)
        object.__setattr__(instance, "args", args)
        object.__setattr__(instance, "state", None)
        return instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # never the foreign class's __init__
        pass

    def __setstate__(self, state: Any) -> None:  # BUILD: record the state, run nothing
        object.__setattr__(self, "state", state)

    def __repr__(self) -> str:
        return f"<set aside: {self.global_name}>"


class _InertCall(type):
    """``REDUCE`` calls the global: allowed for :func:`may_call` names (an inert object comes back), refused
    otherwise, with the text that :func:`vlmprobe.models.checkpoints.refused_pickle` recognises."""

    def __call__(cls, *args: Any, **kwargs: Any):
        if not may_call(cls.global_name):
            import pickle

            raise pickle.UnpicklingError(f"GLOBAL {cls.global_name} would be called to build a value (code, not data)")
        return cls.__new__(cls, *args)


def _placeholder(name: str) -> Any:
    if name == "collections.defaultdict":
        return _plain_dict  # its items follow as SETITEMS, which torch's unpickler allows on a plain dict only
    return _InertCall(name.rpartition(".")[2], (Inert,), {"global_name": name, "__module__": __name__})


def _plain_dict(*args: Any) -> dict:
    return {}


def _foreign_global(error: BaseException) -> str | None:
    match = _UNSUPPORTED.search(str(error))
    if match is None:
        return None
    name = match.group(1)
    return name if "." in name else f"builtins.{name}"  # torch prints builtins without their module


def load_data_only(load: Callable[[], Any]) -> Any:
    """``load()`` (a ``torch.load(weights_only=True)`` of one file), retried with each foreign global it
    refuses registered as an inert placeholder, until it loads or refuses something that is not data."""
    import torch

    placeholders: dict[str, Any] = {}
    while True:
        try:
            with torch.serialization.safe_globals([(obj, name) for name, obj in placeholders.items()]):
                return load()
        except TypeError as error:
            if placeholders and "Tensor subclass" in str(error):  # torch's rebuild met a placeholder as tensor type
                import pickle

                raise pickle.UnpicklingError(f"GLOBAL {sorted(placeholders)[0]} would make tensors of a foreign class ({error})") from error
            raise
        except Exception as error:  # noqa: BLE001 - anything but a foreign global is the caller's to report
            name = _foreign_global(error)
            if name is None or name in placeholders or len(placeholders) >= MAX_FOREIGN_GLOBALS:
                raise
            placeholders[name] = _placeholder(name)


def set_aside(obj: Any) -> list[str]:
    """The foreign globals made inert anywhere in ``obj`` (a loaded checkpoint), sorted."""
    found: set[str] = set()
    seen: set[int] = set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if id(item) in seen or hasattr(item, "dtype") and hasattr(item, "shape"):
            continue
        seen.add(id(item))
        if isinstance(item, Inert):
            found.add(item.global_name)
            stack.extend([item.args, item.state])
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return sorted(found)
