"""What a GPU run must show before its numbers are trusted: CUDA against the CPU's fp32, for embedding (fp32,
bf16 and fp16 autocast), fine-tuning killed and resumed, Grad-CAM maps; the pixel cache read through pinned
memory; the NaN guard when fp16 overflows.

Every test is marked ``gpu`` and skips with the reason where CUDA is absent (CI, laptops). On a GPU node
``bash bench/gpu_check.sh`` runs them with the embedding benchmark and writes one JSON; the figures each test
measured go to the file named by ``VLMPROBE_GPU_FIGURES`` (read by that script), so a failing tolerance is
reported with its number, not only as a failure.

Tolerances, stated once: with ``precision: fp32`` the CUDA embedding may differ from the CPU's only by
reordered float32 sums and TF32 convolutions (cuDNN's default): relative max difference below 1e-2 and cosine
above 0.9999 per row; under autocast, cosine above 0.999 (fp16, 10-bit mantissa) and 0.99 (bf16, 7-bit).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from support import TINY_VIT
from support.images import make_folder_dataset
from support.multilabel import Interrupted, finetune, interrupt_after, synthetic_manifest

from vlmprobe.datasets import make_manifest
from vlmprobe.embed import embed_manifest
from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.embeddings import read_embeddings
from vlmprobe.models.base import FAMILIES, Encoder, ModelFamily, register_family

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (no GPU here); run `bash bench/gpu_check.sh` on a GPU node"),
]

RESNET = {"family": "timm", "name": "resnet18", "pretrained": False, "image_size": 64}
COSINE_FLOOR = {"fp32": 0.9999, "fp16": 0.999, "bf16": 0.99}
FP32_RELATIVE_MAX = 1e-2


def record(name: str, figures: dict) -> None:
    """Add one test's figures to the JSON that bench/gpu_check.sh collects (if it asked for them)."""
    target = os.environ.get("VLMPROBE_GPU_FIGURES")
    if not target:
        return
    path = Path(target)
    saved = json.loads(path.read_text()) if path.exists() else {}
    saved[name] = figures
    path.write_text(json.dumps(saved, indent=2, default=float))


def compare(reference: np.ndarray, other: np.ndarray) -> dict:
    a, b = torch.from_numpy(reference).double(), torch.from_numpy(other).double()
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=1)
    return {
        "min_cosine": float(cosine.min()),
        "max_abs_difference": float((a - b).abs().max()),
        "relative_max_difference": float((a - b).abs().max() / a.abs().max().clamp_min(1e-12)),
    }


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("gpu")
    root = make_folder_dataset(tmp / "images", classes=3, per_class=16)
    path = tmp / "manifest.parquet"
    make_manifest("folder", {"kind": "imagefolder", "root": str(root)}, 0, 0.2, 5, path, tmp / "d", tmp)
    return path


@pytest.mark.parametrize("spec", [RESNET, TINY_VIT], ids=["resnet18", "vit-tiny"])
def test_cuda_embedding_matches_cpu_fp32(manifest, tmp_path, spec):
    reference = tmp_path / "cpu.parquet"
    embed_manifest(manifest, "m", spec, reference, device="cpu", batch_size=16, num_workers=0, precision="fp32")
    cpu = read_embeddings(reference).matrix
    figures = {}
    for precision in ("fp32", "bf16", "fp16"):
        out = tmp_path / f"cuda-{precision}.parquet"
        embed_manifest(manifest, "m", spec, out, device="cuda", batch_size=16, num_workers=2, precision=precision)
        table = read_embeddings(out)
        assert table.metadata["device"] == "cuda" and table.metadata["precision"] == ("fp32" if precision == "fp32" else {"bf16": "bfloat16", "fp16": "float16"}[precision])
        figures[precision] = compare(cpu, table.matrix)
    record(f"embedding_cuda_vs_cpu[{spec['name']}]", figures)
    assert figures["fp32"]["relative_max_difference"] < FP32_RELATIVE_MAX, figures
    for precision, floor in COSINE_FLOOR.items():
        assert figures[precision]["min_cosine"] > floor, (precision, figures)


def test_pixel_cache_loads_through_pinned_memory_and_matches_decoding(manifest, tmp_path):
    from vlmprobe.formats.manifest import read_manifest
    from vlmprobe.models.encode import cached_pixel_loader
    from vlmprobe.models.pixel_cache import fill_cache, open_cache
    from vlmprobe.models.pixel_split import planned_split

    split, _ = planned_split("m", RESNET)
    cache = (tmp_path / "pixels.npy", tmp_path / "pixels.parquet")
    fill_cache(manifest, split, *cache, workers=2, progress=False)
    table, _ = read_manifest(manifest)
    opened = open_cache(*cache, split, table.column("sample_id").to_pylist(), table.column("path").to_pylist())
    batch = next(iter(cached_pixel_loader(opened, 0, 16, "cuda")))
    assert batch.is_pinned() and batch.dtype == torch.uint8

    decoded, cached = tmp_path / "decoded.parquet", tmp_path / "cached.parquet"
    embed_manifest(manifest, "m", RESNET, decoded, device="cuda", batch_size=16, num_workers=2, precision="fp32")
    embed_manifest(manifest, "m", RESNET, cached, device="cuda", batch_size=16, num_workers=2, precision="fp32", pixel_cache=tuple(map(str, cache)))
    a, b = read_embeddings(decoded), read_embeddings(cached)
    assert b.metadata["pixels"]["source"] == "cache"
    figures = compare(a.matrix, b.matrix) | {"bitwise_equal": bool(np.array_equal(a.matrix, b.matrix))}
    record("pixel_cache_cuda_vs_decoding_cuda", figures)
    # the model inputs are the CPU decoder's, bit for bit (pixel_split.to_model divides exactly on the device);
    # between two CUDA runs only the kernels chosen may differ
    assert figures["relative_max_difference"] < 1e-5, figures


def test_finetuning_on_cuda_killed_and_resumed_equals_straight(tmp_path):
    from safetensors.torch import load_file

    from vlmprobe.multilabel.finetune import FinetuneSettings

    data = synthetic_manifest(tmp_path / "data", 80, 32)
    settings = FinetuneSettings(epochs=3, patience=5, batch_size=16, lr=1e-3, head_lr=1e-3, image_size=32)
    straight = finetune(data, TINY_VIT, tmp_path / "straight", settings, device="cuda")
    with pytest.raises(Interrupted):
        finetune(data, TINY_VIT, tmp_path / "killed", settings, device="cuda", after_epoch=interrupt_after(1))
    resumed = finetune(data, TINY_VIT, tmp_path / "killed", settings, device="cuda")
    assert resumed["resumed_after_epochs"] == [1]
    a, b = load_file(tmp_path / "straight" / "encoder.safetensors"), load_file(tmp_path / "killed" / "encoder.safetensors")
    largest = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    record("finetune_cuda_resume", {"max_weight_difference": largest, "val_loss": [h["val_loss"] for h in straight["history"]]})
    # fine-tuning runs with deterministic algorithms (and CUBLAS_WORKSPACE_CONFIG): a resumed run is the same run
    assert largest == 0.0, largest
    assert [h["val_loss"] for h in straight["history"]] == [h["val_loss"] for h in resumed["history"]]


def test_gradcam_maps_on_cuda_match_cpu():
    from PIL import Image

    from vlmprobe.heatmaps.geometry import input_geometry, to_input
    from vlmprobe.heatmaps.maps import compute_maps, target_layer
    from vlmprobe.heatmaps.scorers import ZeroShotScorer
    from vlmprobe.models import load_encoder

    torch.manual_seed(0)
    encoder = load_encoder("vit-tiny", TINY_VIT)
    rng = np.random.default_rng(0)
    images = [Image.fromarray((rng.random((40, 56)) * 255).astype(np.uint8)).convert("RGB") for _ in range(4)]
    inputs = torch.stack([to_input(image, input_geometry(encoder)) for image in images])
    texts = torch.nn.functional.normalize(torch.randn(3, encoder.embed_dim, generator=torch.Generator().manual_seed(1)), dim=-1)
    figures = {}
    for method in ("gradcam", "eigencam"):
        cpu = compute_maps(ZeroShotScorer(encoder.image_module, texts), target_layer(encoder), inputs, [0, 1, 2, 0], method=method, device="cpu")
        cuda = compute_maps(ZeroShotScorer(encoder.image_module, texts), target_layer(encoder), inputs, [0, 1, 2, 0], method=method, device="cuda")
        encoder.image_module.cpu()
        figures[method] = {"max_abs_difference": float(np.abs(cpu - cuda).max())}
    record("gradcam_cuda_vs_cpu", figures)
    for method, found in figures.items():
        assert found["max_abs_difference"] < 1e-3, (method, figures)  # maps are min-max scaled to [0, 1]


class _Overflowing(ModelFamily):
    """A tower whose fp32 activations (~4e5) exceed fp16's largest finite value (65,504)."""

    name = "test_overflowing"
    has_layers = False

    def check(self, model_id, spec):
        return None

    def load(self, model_id, spec, device="cpu"):
        from torchvision import transforms

        linear = torch.nn.Linear(3 * 16 * 16, 8, bias=False)
        torch.nn.init.constant_(linear.weight, 1000.0)
        preprocess = transforms.Compose([transforms.Resize((16, 16)), transforms.ToTensor()])
        return Encoder(model_id, self.name, spec, torch.nn.Sequential(torch.nn.Flatten(), linear).to(device), preprocess, {}, 8)


def test_the_nan_guard_stops_an_fp16_overflow_and_writes_nothing(manifest, tmp_path):
    register_family(_Overflowing)
    try:
        spec = {"family": "test_overflowing"}
        out = tmp_path / "fp16.parquet"
        with pytest.raises(VlmprobeError, match="NaN or Inf") as caught:
            embed_manifest(manifest, "m", spec, out, device="cuda", batch_size=16, num_workers=0, precision="fp16")
        assert "fp32" in str(caught.value) and not out.exists()
        # bf16 has fp32's range: the same model is finite there
        embed_manifest(manifest, "m", spec, tmp_path / "bf16.parquet", device="cuda", batch_size=16, num_workers=0, precision="bf16")
        record("nan_guard_fp16", {"refused": True, "message": str(caught.value)[:300]})
    finally:
        FAMILIES.pop("test_overflowing")
