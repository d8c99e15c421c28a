"""Models behind one interface (:mod:`vlmprobe.models.base`). Every module in ``vlmprobe.models.families``
registers one family on import, so adding a family is adding one file there."""

from __future__ import annotations

import importlib
import pkgutil

from vlmprobe.models.base import (
    FAMILIES,
    Encoder,
    ModelFamily,
    check_spec,
    family_of,
    load_encoder,
    register_family,
)

_loaded = False


def load_families() -> None:
    global _loaded
    if _loaded:
        return
    from vlmprobe.models import families

    for module in pkgutil.iter_modules(families.__path__):
        importlib.import_module(f"{families.__name__}.{module.name}")
    _loaded = True


__all__ = ["FAMILIES", "Encoder", "ModelFamily", "check_spec", "family_of", "load_encoder", "load_families", "register_family"]
