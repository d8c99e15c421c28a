"""Throughput of the embedding stage against the bare model and against the notebook loop.

Three measurements in this one process, on the same model, device and images:

* bare forward: the model alone on pre-made tensors of its input size, in the stage's batch size,
  precision and memory layout (channels-last): what the device can do, with no decoding, no
  preprocessing, no I/O;
* stage: ``vlmprobe.embed.embed_manifest`` on a manifest of the images, exactly as the workflow's
  ``embed`` job runs it (DataLoader workers decode and preprocess while the main process runs the
  model; the table is written at the end), model loading included;
* pixel cache: ``vlmprobe.models.pixel_cache.fill_cache`` decoding the images once into the cache of the model's
  geometry (what the ``pixel_cache`` job does, file hashing included), then the stage reading that warm cache
  (``embed_manifest(..., pixel_cache=...)``), once for each of ``--models-sharing`` k models that share the
  geometry (the same architecture with k different mean / std, as the CLIP models of a study differ): the
  cache is filled once for all k;
* naive loop: the multi-label study's notebook (``extract_image_embeddings`` in
  ``evaluatingBiomedClIP_IUXRAY.ipynb``): for each path, ``preprocess(Image.open(p).convert('RGB'))
  .unsqueeze(0)``, then ``model.encode_image`` under ``torch.no_grad()``, batch 1, full precision.

The images are generated chest-radiograph-sized 8-bit grayscale PNGs (``--source-size``, default
1024 px: IU-Xray's normalised PNGs are of that order), smooth anatomy-like shading plus noise, so
decoding costs what a real scan costs. The model is a randomly initialised timm architecture
(``--model``; weights do not change the arithmetic).

On a CPU the workers and the forward share the cores, so the stage decoding afresh cannot exceed
``1 / (1 + decode_core_seconds * bare_rate / cores)`` of the bare forward; that bound is printed
beside the figures. The machine may be shared, so a bare forward is measured right before every stage run and
each ratio is against the one before it. The last line reads
``embed throughput: <x> of bare forward (warm cache <w>), <y>x naive loop, <k> models share one decode``:
x is the stage's images/s for the k models together, the one cache fill included (k * n images over the fill
plus k warm runs), as a fraction of the bare forward's; w the warm-cache stage's alone; y the k-model figure
as a multiple of the naive loop's.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_images(root: Path, n_images: int, size: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for index in range(n_images):
        # two lung-field-like blobs, a bright mediastinum, smooth gradient and film noise
        shading = (
            120 * np.exp(-(((xx - 0.3) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2))
            + 120 * np.exp(-(((xx - 0.7) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2))
            + 60 * np.exp(-(((xx - 0.5) / 0.05) ** 2))
            + 40 * yy
        )
        pixels = np.clip(shading + rng.normal(0, 12, size=(size, size)) + rng.uniform(-20, 20), 0, 255).astype(np.uint8)
        folder = root / ("a" if index % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(folder / f"img{index:05d}.png")


def bare_forward(encoder, n_images: int, batch_size: int, device: str, size: int) -> float:
    import torch

    from vlmprobe.runtime import autocast_dtype

    dtype = autocast_dtype(device, "auto")
    # the model as the stage runs it (channels-last, the stage's precision), minus decoding and I/O
    encoder.image_module.eval().to(memory_format=torch.channels_last)
    batches = [
        torch.randn(min(batch_size, n_images - start), 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
        for start in range(0, n_images, batch_size)
    ]

    def run():
        with torch.inference_mode():
            for batch in batches:
                if dtype is not None:
                    with torch.autocast(device_type="cuda", dtype=dtype):
                        features = encoder.encode_image(batch)
                else:
                    features = encoder.encode_image(batch)
                features.float().cpu()

    run()  # warm-up: kernel selection, caches
    started = time.perf_counter()
    run()
    return n_images / (time.perf_counter() - started)


def decode_seconds(encoder, paths: list[str]) -> float:
    """Core-seconds to decode and preprocess one image (one thread, as in a DataLoader worker)."""
    import torch

    from vlmprobe.images import load_image

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        started = time.perf_counter()
        for path in paths:
            encoder.preprocess(load_image(path))
        return (time.perf_counter() - started) / len(paths)
    finally:
        torch.set_num_threads(threads)


def naive_loop(encoder, paths: list[str], device: str) -> float:
    import torch

    encoder.image_module.to(device, memory_format=torch.contiguous_format).eval()  # the notebook's default layout
    started = time.perf_counter()
    embeds = []
    for p in paths:
        img = encoder.preprocess(Image.open(p).convert("RGB")).unsqueeze(0).to(device)
        with torch.no_grad():
            e = encoder.encode_image(img)
        embeds.append(e.cpu())
    torch.cat(embeds)
    return len(paths) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18", help="timm architecture (random init)")
    parser.add_argument("--n-images", type=int, default=256)
    parser.add_argument("--source-size", type=int, default=1024, help="side of the generated PNGs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models-sharing", type=int, default=3, help="k models with one geometry read one pixel cache")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    import torch

    from vlmprobe.datasets import make_manifest
    from vlmprobe.embed import embed_manifest
    from vlmprobe.formats.embeddings import read_embeddings
    from vlmprobe.models import load_encoder
    from vlmprobe.models.pixel_cache import fill_cache
    from vlmprobe.models.pixel_split import planned_split
    from vlmprobe.runtime import resolve_device

    device = resolve_device(args.device)
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    spec = {"family": "timm", "name": args.model, "pretrained": False}
    with tempfile.TemporaryDirectory(prefix="vlmprobe-bench-embed-") as tmp:
        tmp_path = Path(tmp)
        make_images(tmp_path / "images", args.n_images, args.source_size)
        manifest = tmp_path / "manifest.parquet"
        make_manifest("bench", {"kind": "imagefolder", "root": str(tmp_path / "images")}, 0, 0.2, 5, manifest, tmp_path / "d", tmp_path)
        paths = sorted(str(p) for p in (tmp_path / "images").rglob("*.png"))

        encoder = load_encoder("bench", spec, device)
        size = int(encoder.preprocess_info["timm_data_config"]["input_size"][-1])
        bare = bare_forward(encoder, args.n_images, args.batch_size, device, size)
        decode = decode_seconds(encoder, paths[: min(32, len(paths))])
        naive_loop(encoder, paths[: min(8, len(paths))], device)  # warm-up
        naive = naive_loop(encoder, paths, device)

        # on a shared machine the load moves during the run: each stage run is compared with a bare forward
        # measured right before it (the ratios), the mean of those is the figure printed as "bare forward"
        bares = [bare]
        started = time.perf_counter()
        embed_manifest(manifest, "bench", spec, tmp_path / "table.parquet", device=device, batch_size=args.batch_size, threads=threads)
        stage = args.n_images / (time.perf_counter() - started)
        stage_ratio = stage / bare

        # k models that differ only in mean / std: one geometry, one cache
        k = max(1, args.models_sharing)
        specs = [spec] + [{**spec, "preprocess": {"mean": [0.5 - 0.01 * i] * 3, "std": [0.25 + 0.01 * i] * 3}} for i in range(1, k)]
        splits = [planned_split(f"bench{i}", s)[0] for i, s in enumerate(specs)]
        assert len({split.name for split in splits}) == 1, "the k models were meant to share one geometry"
        cache = (tmp_path / "pixels.npy", tmp_path / "pixels.parquet")
        started = time.perf_counter()
        fill_cache(manifest, splits[0], *cache, workers=threads, progress=False)
        fill_seconds = time.perf_counter() - started
        warm_seconds, warm_ratios = [], []
        for i, model_spec in enumerate(specs):
            bares.append(bare_forward(encoder, args.n_images, args.batch_size, device, size))
            started = time.perf_counter()
            embed_manifest(manifest, f"bench{i}", model_spec, tmp_path / f"cached{i}.parquet", device=device, batch_size=args.batch_size, threads=threads, pixel_cache=tuple(map(str, cache)))
            warm_seconds.append(time.perf_counter() - started)
            warm_ratios.append(args.n_images / warm_seconds[-1] / bares[-1])
        assert read_embeddings(tmp_path / "cached0.parquet").metadata["pixels"]["source"] == "cache"
        exact = bool(np.array_equal(read_embeddings(tmp_path / "cached0.parquet").matrix, read_embeddings(tmp_path / "table.parquet").matrix))
        warm = args.n_images / (sum(warm_seconds) / k)
        shared = k * args.n_images / (fill_seconds + sum(warm_seconds))
        fill = args.n_images / fill_seconds
        bare = float(np.mean(bares))
        warm_ratio = float(np.mean(warm_ratios))
        shared_ratio = shared / float(np.mean(bares[1:]))

    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU, {threads} threads"
    print(f"model {args.model} at {size} px, {args.n_images} PNGs of {args.source_size} px, batch {args.batch_size}, {name}")
    print(f"bare forward  {bare:8.1f} images/s  (mean of {len(bares)} runs, one before each stage run: {', '.join(f'{b:.1f}' for b in bares)})")
    print(f"stage         {stage:8.1f} images/s  (embed_manifest decoding afresh, model loading included)")
    print(f"cache fill    {fill:8.1f} images/s  (fill_cache: hash, decode, resize, crop once; {threads} workers)")
    print(f"warm cache    {warm:8.1f} images/s  (embed_manifest reading the cache, model loading included; mean of {k} models)")
    print(f"{k} models      {shared:8.1f} images/s  (one fill + {k} warm runs, per model-image)")
    print(f"naive loop    {naive:8.1f} images/s  (notebook: open, preprocess, forward batch 1, fp32)")
    print(f"cache-fed table equals the decoded one: {exact}")
    if device == "cpu":
        # decoding and the forward share the cores: the stage cannot beat cores / (model + decode core-time)
        bound = 1.0 / (1.0 + decode * bare / threads)
        print(f"decode+preprocess {1000 * decode:.1f} core-ms/image: on {threads} shared cores the stage is bounded by {bound:.2f} of bare forward")
    else:
        workers = min(8, threads - 1)
        print(f"decode+preprocess {1000 * decode:.1f} core-ms/image: {workers} workers decode {workers / decode:.0f} images/s")
    if args.json:
        figures = {
            "model": args.model, "input_px": size, "n_images": args.n_images, "source_px": args.source_size, "batch_size": args.batch_size,
            "device": name, "bare_forward_images_per_s": bare, "stage_decoding_images_per_s": stage, "cache_fill_images_per_s": fill,
            "warm_cache_images_per_s": warm, "models_sharing": k, "shared_images_per_s": shared, "naive_loop_images_per_s": naive,
            "decode_core_ms_per_image": 1000 * decode, "cache_table_equals_decoded": exact,
            "bare_forward_runs": bares, "stage_of_bare": stage_ratio, "warm_of_bare": warm_ratio, "shared_of_bare": shared_ratio, "shared_vs_naive": shared / naive,
        }
        Path(args.json).write_text(json.dumps(figures, indent=2))
    print(f"stage decoding afresh: {stage_ratio:.2f} of bare forward")
    print(f"embed throughput: {shared_ratio:.2f} of bare forward (warm cache {warm_ratio:.2f}), {shared / naive:.1f}x naive loop, {k} models share one decode")


if __name__ == "__main__":
    main()
