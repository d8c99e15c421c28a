"""Running an image tower over image files in batches: decoding and preprocessing in DataLoader workers (or
uint8 pixels from a pixel cache, normalised on the device), the forward pass under autocast on CUDA. Used by the embed stage and by fine-tuning for its own table."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.images import load_image
from vlmprobe.runtime import autocast_dtype


@dataclass
class BadImage:
    """An image that failed to decode in a DataLoader worker, carried to the main process as data.

    An exception raised in a worker reaches the main process re-built from its formatted traceback,
    so a :class:`VlmprobeError` would arrive as pages of traceback instead of its one-line message.
    """

    problem: str
    fix: str | None


class ManifestImages:
    """A map-style dataset over manifest paths, applying the model's own preprocessing."""

    def __init__(self, paths: list[str], preprocess):
        self.paths = paths
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            return self.preprocess(load_image(self.paths[index]))
        except VlmprobeError as error:
            return BadImage(error.problem, error.fix)


def collate_images(items: list):
    """Stack a batch, or pass on its first :class:`BadImage` for the main process to raise."""
    import torch

    for item in items:
        if isinstance(item, BadImage):
            return item
    return torch.stack(items)


def embed_batches(encoder, paths: list[str], device: str, batch_size: int, num_workers: int, precision: str, progress: bool = True) -> Iterator[np.ndarray]:
    """Yield the (batch, D) float32 embeddings of ``paths``, batch by batch, in order."""
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(
        ManifestImages(paths, encoder.preprocess),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_images,
        pin_memory=device.startswith("cuda"),
        prefetch_factor=4 if num_workers > 0 else None,
        persistent_workers=False,
    )

    def model_inputs():
        for batch in loader:
            if isinstance(batch, BadImage):
                raise VlmprobeError(batch.problem, batch.fix)
            yield batch.to(device, non_blocking=True, memory_format=torch.channels_last)

    yield from run_tower(encoder, model_inputs(), len(loader), device, precision, progress)


def embed_cached_batches(encoder, cache, split, start: int, device: str, batch_size: int, precision: str, progress: bool = True) -> Iterator[np.ndarray]:
    """Yield the embeddings of the rows ``start:`` of a pixel cache (:mod:`vlmprobe.models.pixel_cache`), batch by
    batch: the uint8 pixels go to the device as they are and are normalised there (:func:`pixel_split.to_model`).
    On CUDA one worker reads the memory map into pinned memory while the GPU runs the previous batch."""
    from vlmprobe.models.pixel_split import to_model

    loader = cached_pixel_loader(cache, start, batch_size, device)
    yield from run_tower(encoder, (to_model(pixels, split, device) for pixels in loader), len(loader), device, precision, progress)


def cached_pixel_loader(cache, start: int, batch_size: int, device: str):
    """Whole batches of uint8 rows ``start:`` of a pixel cache; on CUDA read ahead by one worker into pinned memory."""
    from torch.utils.data import DataLoader

    from vlmprobe.models.pixel_cache import PixelBatches

    cuda = device.startswith("cuda")
    return DataLoader(
        PixelBatches(cache, start, batch_size),
        batch_size=None,
        num_workers=1 if cuda else 0,  # on a CPU reading the map is a memcpy: a worker would only take a core
        pin_memory=cuda,
        prefetch_factor=4 if cuda else None,
    )


def run_tower(encoder, model_inputs, n_batches: int, device: str, precision: str, progress: bool = True) -> Iterator[np.ndarray]:
    """The image tower over batches of model inputs on the device: channels-last, under autocast on CUDA."""
    import torch
    from tqdm import tqdm

    dtype = autocast_dtype(device, precision)
    # channels-last is the layout oneDNN (CPU) and cuDNN (tensor cores) convolve fastest: 1.3x for a
    # ResNet-18 forward on 2 CPU cores; a ViT only has its patch embedding to convert
    encoder.image_module.eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        for batch in tqdm(model_inputs, total=n_batches, desc=f"embed {encoder.model_id}", unit="batch", disable=not progress, mininterval=5):
            if dtype is not None:
                with torch.autocast(device_type="cuda", dtype=dtype):
                    features = encoder.encode_image(batch)
            else:
                features = encoder.encode_image(batch)
            yield features.float().cpu().numpy()


def embed_images(encoder, paths: list[str], device: str, batch_size: int, num_workers: int, precision: str, progress: bool = True) -> np.ndarray:
    chunks = list(embed_batches(encoder, paths, device, batch_size, num_workers, precision, progress))
    return np.concatenate(chunks, axis=0) if chunks else np.zeros((0, encoder.embed_dim), np.float32)
