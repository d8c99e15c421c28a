"""Probes on cached embedding tables: the poster's LinearSVC protocol lives in :mod:`.linear`."""

from vlmprobe.probes.linear import run_linear_probe

__all__ = ["run_linear_probe"]
