"""The pixel cache: a dataset's images decoded once per geometry, as uint8 pixels every model with that geometry reads.

Decoding and resizing dominate embedding, and most models share their geometric preprocessing (a 224 or 336
resize and centre crop), differing only in mean and std. So the ``pixel_cache`` job (its own CPU job in the
embed stage) decodes each image of a manifest once per geometry (:mod:`vlmprobe.models.pixel_split`) into:

- ``{geometry}.npy``: one uint8 array (N, H, W, C), memory-mapped by the readers. A dataset whose every image is
  gray (8/16-bit grayscale PNGs, MedMNIST rows, ...) is kept as one channel (C = 1) and repeated to three on the
  device: every geometric step treats the channels alike, so this is exact;
- ``{geometry}.parquet``: the index: one row per image (``sample_id``, ``path``, the file it reads with its
  size, modification time and SHA-256) and, in the schema metadata, the geometry, the library versions the
  pixels depend on and the key over all of it.

A reader (:func:`open_cache`) trusts the cache only if the key is its own: the same rows, the same geometry, the
same versions, and every file unchanged (same size and modification time, or else the same SHA-256). A job
killed half-way resumes: the rows filled so far are in ``{geometry}.npy.partial`` with their count and key in
``{geometry}.npy.partial.json``; a run under another key starts over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.images import NPZ_SEPARATOR, load_image
from vlmprobe.io import atomic_path, write_json
from vlmprobe.models.pixel_split import PixelSplit, geometry_transform

log = logging.getLogger(__name__)

CACHE_VERSION = 1
# PIL modes whose RGB conversion (vlmprobe.images.to_rgb) has R = G = B
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def pixel_versions() -> dict[str, str]:
    """What decoded pixels depend on besides the files and the geometry: the decoder, the resampler and our conversion."""
    import PIL
    import torchvision

    import vlmprobe.images

    # the conversion's own source: any change to how images are read refills every cache
    conversion = hashlib.sha256(Path(vlmprobe.images.__file__).read_bytes()).hexdigest()[:16]
    return {"cache": str(CACHE_VERSION), "pillow": PIL.__version__, "torchvision": torchvision.__version__, "numpy": np.__version__, "vlmprobe.images": conversion}


def source_file(path: str) -> str:
    """The file a manifest path reads (an ``.npz`` for ``file.npz::array::row``)."""
    return path.split(NPZ_SEPARATOR)[0] if NPZ_SEPARATOR in path else path


def _sha256(file: str) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int
    sha256: str


def file_states(paths: list[str], threads: int = 4) -> dict[str, FileState]:
    """Size, modification time and content hash of every file the paths read (hashing releases the GIL)."""
    files = sorted({source_file(p) for p in paths})

    def state(file: str) -> FileState:
        try:
            stat = os.stat(file)
            return FileState(stat.st_size, stat.st_mtime_ns, _sha256(file))
        except OSError as error:
            raise VlmprobeError(f"Image file {file!r} cannot be read ({error}).", "restore the file or rebuild the manifest.") from error

    with ThreadPoolExecutor(max(1, threads)) as pool:
        return dict(zip(files, pool.map(state, files)))


def _is_gray(path: str) -> bool:
    """Whether ``load_image`` gives R = G = B for this image, from its header (or array shape) alone."""
    from PIL import Image

    if NPZ_SEPARATOR in path:
        npz_path, array, _ = path.split(NPZ_SEPARATOR)
        from vlmprobe.images import _npz_array

        shape = _npz_array(npz_path, array).shape
        return len(shape) == 3 or (len(shape) == 4 and shape[-1] == 1)
    try:
        with Image.open(path) as image:
            return image.mode in GRAY_MODES
    except Exception:  # noqa: BLE001 - an unreadable file is reported with its fix when it is decoded
        return False


def cache_key(split: PixelSplit, sample_ids: list[str], paths: list[str], states: dict[str, FileState], channels: int) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"split": split.key, "versions": pixel_versions(), "channels": channels}, sort_keys=True).encode())
    for sample_id, path in zip(sample_ids, paths):
        digest.update(f"{sample_id}\0{path}\0{states[source_file(path)].sha256}\n".encode())
    return digest.hexdigest()


class _DecodedPixels:
    """Map-style dataset: manifest row -> its cached pixels (H, W, C stored), or the decoding error as data."""

    def __init__(self, paths: list[str], geometry: tuple[dict[str, Any], ...], shape: tuple[int, int, int]):
        self.paths = paths
        self.geometry = geometry
        self.shape = shape
        self.transform = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from vlmprobe.models.encode import BadImage

        if self.transform is None:  # built in the worker process
            self.transform = geometry_transform(self.geometry)
        try:
            pixels = self.transform(load_image(self.paths[index]))
        except VlmprobeError as error:
            return BadImage(error.problem, error.fix)
        height, width, channels = self.shape
        if pixels.shape[:2] != (height, width):
            raise RuntimeError(f"geometry gave {pixels.shape} for {self.paths[index]!r}, expected {self.shape}")
        if channels == 1 and pixels.shape[2] == 3:
            if not (np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2])):
                raise RuntimeError(f"{self.paths[index]!r} has a gray header but colour pixels")
            pixels = pixels[..., :1]
        return pixels


def _collate(items: list):
    from vlmprobe.models.encode import BadImage

    for item in items:
        if isinstance(item, BadImage):
            return item
    return np.stack(items)


def fill_cache(
    manifest_path: str | Path,
    split: PixelSplit,
    out_pixels: str | Path,
    out_index: str | Path,
    workers: int = 2,
    chunk_images: int = 256,
    progress: bool = True,
) -> None:
    """Decode every image of the manifest once through ``split``'s geometry into the cache, resuming a killed run."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from vlmprobe.formats.manifest import read_manifest
    from vlmprobe.models.encode import BadImage

    started = time.perf_counter()
    table, _ = read_manifest(manifest_path)
    sample_ids = table.column("sample_id").to_pylist()
    paths = table.column("path").to_pylist()
    states = file_states(paths, threads=workers)
    channels = split.channels
    if channels == 3 and split.channel_symmetric and paths and all(_is_gray(p) for p in paths):
        channels = 1  # a gray dataset kept as one channel, repeated to three on the device
    key = cache_key(split, sample_ids, paths, states, channels)
    shape = (len(paths), split.height, split.width, channels)
    out_pixels = Path(out_pixels)
    partial = Path(f"{out_pixels}.partial")
    progress_file = Path(f"{out_pixels}.partial.json")
    done = _resumable_rows(partial, progress_file, key, shape)
    if done:
        log.info("resuming the pixel cache: %d of %d images were decoded before the job stopped", done, len(paths))
        pixels = np.lib.format.open_memmap(partial, mode="r+")
    else:
        partial.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
        write_json(progress_file, {"key": key, "done": 0})
    log.info("pixel cache %s: %d images -> %s uint8 (%.1f GB), geometry %s", out_pixels.name, len(paths), shape, pixels.nbytes / 1e9, split.geometry)
    loader = DataLoader(
        _DecodedPixels(paths[done:], split.geometry, shape[1:]),
        batch_size=chunk_images,
        num_workers=workers,
        collate_fn=_collate,
        prefetch_factor=2 if workers > 0 else None,
    )
    start = done
    for batch in tqdm(loader, desc=f"pixel cache {out_pixels.stem}", unit="chunk", disable=not progress, mininterval=5):
        if isinstance(batch, BadImage):
            raise VlmprobeError(batch.problem, batch.fix)
        pixels[start : start + len(batch)] = batch
        start += len(batch)
        pixels.flush()  # the rows are on disk before the progress file says so
        write_json(progress_file, {"key": key, "done": start})
    pixels.flush()
    del pixels
    os.replace(partial, out_pixels)
    write_index(out_index, sample_ids, paths, states, {"key": key, "split": split.describe(), "versions": pixel_versions(), "shape": list(shape)})
    progress_file.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    log.info("decoded %d images in %.1f s (%.1f images/s)", len(paths), seconds, len(paths) / max(seconds, 1e-9))


def _resumable_rows(partial: Path, progress_file: Path, key: str, shape: tuple[int, ...]) -> int:
    """Rows a killed run left in ``partial`` under the same key, else 0 (and the leftovers are removed)."""
    try:
        saved = json.loads(progress_file.read_text())
        if saved["key"] == key and partial.exists():
            array = np.load(partial, mmap_mode="r")
            if array.shape == shape and array.dtype == np.uint8:
                return int(saved["done"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if partial.exists() or progress_file.exists():
        log.info("discarding a partial pixel cache made under another key (files, geometry or versions changed)")
    partial.unlink(missing_ok=True)
    progress_file.unlink(missing_ok=True)
    return 0


def write_index(path: str | Path, sample_ids: list[str], paths: list[str], states: dict[str, FileState], meta: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [source_file(p) for p in paths]
    table = pa.table(
        {
            "sample_id": sample_ids,
            "path": paths,
            "file": files,
            "size": pa.array([states[f].size for f in files], pa.int64()),
            "mtime_ns": pa.array([states[f].mtime_ns for f in files], pa.int64()),
            "sha256": [states[f].sha256 for f in files],
        }
    ).replace_schema_metadata({"vlmprobe_pixel_cache": json.dumps(meta)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


@dataclass
class CachedPixels:
    """A trusted cache, opened for reading: ``pixels`` is the memory-mapped (N, H, W, C) array."""

    pixels: np.ndarray
    meta: dict[str, Any]

    def __len__(self) -> int:
        return len(self.pixels)


class PixelBatches:
    """Map-style dataset of whole batches of cached rows [start + i * batch_size, ...), read from the memory map."""

    def __init__(self, cache: CachedPixels, start: int, batch_size: int):
        self.cache = cache
        self.start = start
        self.batch_size = batch_size

    def __len__(self) -> int:
        return max(0, -(-(len(self.cache) - self.start) // self.batch_size))

    def __getitem__(self, index: int):
        import torch

        first = self.start + index * self.batch_size
        return torch.from_numpy(np.array(self.cache.pixels[first : first + self.batch_size]))  # read from the map into memory


def open_cache(pixels_path: str | Path, index_path: str | Path, split: PixelSplit, sample_ids: list[str], paths: list[str]) -> CachedPixels | str:
    """The cache, if every pixel in it is what decoding afresh would give now; else why not (a note for the table)."""
    import pyarrow.parquet as pq

    try:
        index = pq.read_table(index_path)
        meta = json.loads(index.schema.metadata[b"vlmprobe_pixel_cache"])
    except (OSError, KeyError, ValueError, TypeError) as error:
        return f"pixel cache index {str(index_path)!r} unreadable ({error})"
    if meta["split"]["key"] != split.key:
        return f"pixel cache geometry {meta['split']['geometry']} is not the model's {list(split.geometry)}"
    if meta["versions"] != pixel_versions():
        return f"pixel cache made with {meta['versions']}, this job has {pixel_versions()}"
    if index.column("sample_id").to_pylist() != sample_ids or index.column("path").to_pylist() != paths:
        return "pixel cache rows are not the manifest's"
    changed = _changed_files(index)
    if changed:
        return f"{len(changed)} image file(s) changed since the pixel cache was filled, e.g. {changed[:3]}"
    try:
        pixels = np.load(pixels_path, mmap_mode="r")
    except (OSError, ValueError) as error:
        return f"pixel cache {str(pixels_path)!r} unreadable ({error})"
    if list(pixels.shape) != meta["shape"] or pixels.dtype != np.uint8:
        return f"pixel cache {str(pixels_path)!r} holds {pixels.shape} {pixels.dtype}, its index says {meta['shape']} uint8"
    return CachedPixels(pixels, meta)


def _changed_files(index) -> list[str]:
    """Files whose size or modification time differ from the index's and whose content does too."""
    recorded = {}
    for file, size, mtime_ns, sha in zip(*(index.column(name).to_pylist() for name in ("file", "size", "mtime_ns", "sha256"))):
        recorded[file] = (size, mtime_ns, sha)
    changed = []
    for file, (size, mtime_ns, sha) in recorded.items():
        try:
            stat = os.stat(file)
            if (stat.st_size, stat.st_mtime_ns) != (size, mtime_ns) and _sha256(file) != sha:
                changed.append(file)
        except OSError:
            changed.append(file)
    return changed
