"""``npz``: MedMNIST-style arrays (``train_images``, ``train_labels``, ``val_*``, ``test_*``).

The poster re-splits every dataset (its official splits are not used), so all parts are pooled and
the manifest's own stratified split applies. Images are read in place (``file.npz::array::row``);
nothing is unpacked to disk. Labels of shape (n,) or (n, 1) are multi-class; (n, k>1) 0/1 rows are
multi-label (ChestMNIST).
"""

from __future__ import annotations

import zipfile
import zlib
from typing import Any

import numpy as np

from vlmprobe.datasets.records import DatasetContext, Record, spec_value
from vlmprobe.errors import VlmprobeError
from vlmprobe.images import npz_reference

PARTS = ("train", "val", "test")


def load_records(spec: dict[str, Any], ctx: DatasetContext) -> list[Record]:
    npz_path = ctx.resolve(spec_value(spec, "path", ctx.name))
    if not npz_path.is_file():
        raise VlmprobeError(
            f"Dataset {ctx.name!r}: file {str(npz_path)!r} does not exist.",
            f"download the .npz there or correct `datasets: {ctx.name}: path:`.",
        )
    try:
        archive = np.load(npz_path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise VlmprobeError(f"Dataset {ctx.name!r}: {str(npz_path)!r} is not a readable .npz ({error}).", "re-download it.") from error
    names = spec.get("label_names")
    records = []
    with archive:
        parts = [part for part in PARTS if f"{part}_images" in archive.files]
        if not parts:
            raise VlmprobeError(
                f"Dataset {ctx.name!r}: {str(npz_path)!r} has none of the arrays {[p + '_images' for p in PARTS]}; it has {archive.files}.",
                "use a MedMNIST-style .npz (train_images/train_labels, ...).",
            )
        for part in parts:
            if f"{part}_labels" not in archive.files:
                raise VlmprobeError(f"Dataset {ctx.name!r}: {part}_images has no {part}_labels array.", "use a complete MedMNIST .npz.")
            try:
                labels = np.asarray(archive[f"{part}_labels"])
                n_images = archive[f"{part}_images"].shape[0]
            except (OSError, ValueError, zipfile.BadZipFile, zlib.error) as error:
                # allow_pickle=False: an object array (a pickle that could run code) lands here, as does a truncated file
                raise VlmprobeError(
                    f"Dataset {ctx.name!r}: cannot read {part}_images/{part}_labels from {str(npz_path)!r} ({error}).",
                    "use a .npz of plain numeric arrays (MedMNIST's own files are); re-download it if it is truncated.",
                ) from error
            if labels.shape[0] != n_images:
                raise VlmprobeError(
                    f"Dataset {ctx.name!r}: {part}_labels has {labels.shape[0]} rows but {part}_images has {n_images}.",
                    "re-download the .npz.",
                )
            labels = labels.reshape(n_images, -1)
            for row in range(n_images):
                if labels.shape[1] == 1:
                    indices = [int(labels[row, 0])]
                else:
                    indices = [int(i) for i in np.flatnonzero(labels[row])]
                label_names = tuple(sorted(_name(names, i, ctx.name) for i in indices)) or ("normal",)
                records.append(
                    Record(
                        sample_id=f"{part}-{row:06d}",
                        path=npz_reference(npz_path.resolve(), f"{part}_images", row),
                        labels=label_names,
                        meta={"official_split": part},
                    )
                )
    return records


def _name(names: list[str] | dict | None, index: int, dataset: str) -> str:
    if names is None:
        return str(index)
    try:
        return str(names[index] if isinstance(names, list) else names.get(index, names.get(str(index))))
    except IndexError as error:
        raise VlmprobeError(
            f"Dataset {dataset!r}: label index {index} has no entry in `label_names` ({len(names)} names).",
            "list one name per label index in `label_names`.",
        ) from error
