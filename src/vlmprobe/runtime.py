"""Where models run: the device, mixed precision, and the package versions recorded beside results."""

from __future__ import annotations

import platform

from vlmprobe.errors import VlmprobeError


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VlmprobeError(f"Device {device!r} was requested but CUDA is not available here.", "set `embedding: device: auto` or run on a GPU node.")
    return device


def autocast_dtype(device: str, precision: str):
    import torch

    if not device.startswith("cuda") or precision == "fp32":
        return None
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in ("vlmprobe", "torch", "torchvision", "open_clip_torch", "timm", "numpy", "pyarrow"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            pass
    return versions
