"""Offline resolution of Hugging Face Hub model names (``hf-hub:org/repo``, ``org/repo``).

A hub name cannot be checked against a registry that lives on the network, and a GPU node usually
has no network. So a hub name resolves, without network, from one of:

1. the local Hugging Face cache (``huggingface-cli download org/repo`` on a login node puts it
   there, and that is also where the libraries load the weights from on an offline node): the
   repository's own config file is read;
2. ``hub_repos.json``, a small vendored list of the repositories the study presets use, each with
   the architecture facts copied from its config file.

When both exist they must agree on the architecture, so a repository that changed upstream is
noticed. Then the library that will load the model is asked whether it can build that
architecture (timm knows the ViT, transformers can build the config), which is as far as an
offline check can go: whether the *weights* download (gated repositories, tokens) is only known
when they are fetched.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

from vlmprobe.errors import VlmprobeError

REGISTRY_FILE = Path(__file__).with_name("hub_repos.json")
HUB_PREFIXES = ("hf-hub:", "hf_hub:")


def strip_hub_prefix(name: str) -> str | None:
    """``hf-hub:org/repo`` -> ``org/repo``; None for names without the prefix."""
    for prefix in HUB_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return None


@functools.cache
def known_repos() -> dict[str, dict[str, Any]]:
    return json.loads(REGISTRY_FILE.read_text())["repos"]


def known_repo(repo_id: str) -> dict[str, Any] | None:
    """The vendored entry of ``repo_id`` (hub ids are case-insensitive), or None."""
    lowered = repo_id.lower()
    for name, entry in known_repos().items():
        if name.lower() == lowered:
            return {"repo_id": name, **entry}
    return None


def cached_config(repo_id: str, filename: str) -> dict[str, Any] | None:
    """The repository's config file from the local Hugging Face cache, if it is there (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with open_clip and timm
        return None
    try:
        path = try_to_load_from_cache(repo_id, filename)
    except Exception:  # noqa: BLE001 - a malformed id is reported by the caller
        return None
    if not isinstance(path, str):
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def check_repo_id(model_id: str, repo_id: str) -> None:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts) or any(" " in part for part in parts):
        raise VlmprobeError(f"Model {model_id!r}: {repo_id!r} is not a Hugging Face repository id of the form org/repo.", "fix the name.")


def _differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Paths where ``actual`` disagrees with the vendored ``expected`` (keys absent from ``actual`` are not compared)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key, value in expected.items():
            if key in actual:
                found += _differences(value, actual[key], f"{path}.{key}" if path else key)
        return found
    if isinstance(expected, float) or isinstance(actual, float):
        try:
            return [] if abs(float(expected) - float(actual)) <= 1e-9 * max(1.0, abs(float(expected))) else [f"{path}: {expected!r} != {actual!r}"]
        except (TypeError, ValueError):
            pass
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in _differences(e, a, f"{path}[{i}]")]
    return [] if expected == actual else [f"{path}: {expected!r} != {actual!r}"]


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def resolve(model_id: str, repo_id: str, library: str, config_file: str = "config.json") -> tuple[dict[str, Any], str]:
    """(the repository's architecture config, where it came from: 'cache' or 'vendored')."""
    check_repo_id(model_id, repo_id)
    entry = known_repo(repo_id)
    if entry and entry["library"] != library:
        raise VlmprobeError(
            f"Model {model_id!r}: {repo_id!r} is a {entry['library']} model, not a {library} one.",
            f"use `family: {entry['library'] if entry['library'] != 'transformers' else 'transformers_clip'}` for it.",
        )
    cached = cached_config(repo_id, entry["config_file"] if entry else config_file)
    if cached is not None and entry:
        differences = _differences(entry["architecture"], cached)
        if differences:
            raise VlmprobeError(
                f"Model {model_id!r}: the cached config of {repo_id!r} disagrees with vlmprobe's record of it "
                f"({'; '.join(differences[:4])}): the repository changed since the record was made.",
                "check the repository's history; update src/vlmprobe/models/hub_repos.json if the new architecture is intended, or pin `revision:`.",
            )
    if cached is not None:
        # the cached file wins; the record fills what the file leaves to library defaults (the config.json of
        # LLM2CLIP-Openai-L-14-224 omits the vision tower's image_size, for instance: a 336-px sibling that did
        # the same would get transformers' default of 224)
        return (_merged(entry["architecture"], cached) if entry else cached), "cache"
    if entry:
        return entry["architecture"], "vendored"
    close = difflib.get_close_matches(repo_id, list(known_repos()), n=3, cutoff=0.8)
    raise VlmprobeError(
        f"Model {model_id!r}: {repo_id!r} is neither in the local Hugging Face cache nor in vlmprobe's list of known "
        + (f"repositories (did you mean {close}?), " if close else "repositories, ")
        + "so its name and architecture cannot be checked offline (and an offline GPU node could not load it).",
        f"pre-download it on a machine with network (`huggingface-cli download {repo_id}`, into the cache the cluster "
        "shares via HF_HOME), or use a local folder (`local-dir:<path>`), or add it to src/vlmprobe/models/hub_repos.json.",
    )


def check_open_clip_hub(model_id: str, repo_id: str) -> dict[str, Any]:
    """An open_clip hub model: its timm vision trunk must exist in timm, an HF text tower needs transformers."""
    config, _ = resolve(model_id, repo_id, "open_clip", "open_clip_config.json")
    model_cfg = config.get("model_cfg")
    if not isinstance(model_cfg, dict) or "vision_cfg" not in model_cfg:
        raise VlmprobeError(f"Model {model_id!r}: the open_clip_config.json of {repo_id!r} has no model_cfg.vision_cfg.", "is it an open_clip repository?")
    trunk = model_cfg["vision_cfg"].get("timm_model_name")
    if trunk:
        import timm

        if not timm.is_model(trunk):
            raise VlmprobeError(f"Model {model_id!r}: {repo_id!r} needs timm architecture {trunk!r}, which this timm does not have.", "upgrade timm.")
    if model_cfg.get("text_cfg", {}).get("hf_model_name") and importlib.util.find_spec("transformers") is None:
        raise VlmprobeError(f"Model {model_id!r}: {repo_id!r} has a Hugging Face text tower, which needs `transformers`.", "pip install transformers.")
    return config


def check_timm_hub(model_id: str, repo_id: str) -> dict[str, Any]:
    """A timm hub model: its ``architecture`` must be a timm model name."""
    import timm

    config, _ = resolve(model_id, repo_id, "timm", "config.json")
    architecture = config.get("architecture")
    if not architecture or not timm.is_model(architecture):
        raise VlmprobeError(
            f"Model {model_id!r}: {repo_id!r} names timm architecture {architecture!r}, which this timm does not have.",
            "upgrade timm, or check that the repository is a timm model.",
        )
    return config
