"""Model families. Every module in this package registers one family on import, so adding a
family is adding one file."""

from __future__ import annotations

import importlib
import pkgutil

from vlmprobe.models.base import FAMILIES, Encoder, ModelFamily, check_spec, family_of, load_encoder, register_family

_loaded = False


def load_families() -> None:
    global _loaded
    if _loaded:
        return
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")
    _loaded = True


__all__ = ["FAMILIES", "Encoder", "ModelFamily", "check_spec", "family_of", "load_encoder", "load_families", "register_family"]
