"""DICOM pixels as a radiologist's viewer shows them, converted to 8 bits by pydicom's own steps.

A DICOM file stores values, not a picture. What a viewer shows is, in order (DICOM PS3.3 C.11 and
PS3.4 N.2): the stored values, sign-extended and masked to *Bits Stored* (pydicom's decoders,
``pydicom.pixels.pixel_array``); the **Modality LUT** (*Rescale Slope / Intercept* or a *Modality
LUT Sequence*: ``apply_modality_lut``), giving Hounsfield units or optical density; the **VOI
transform** (*Window Center / Width* with its *VOI LUT Function*, or a *VOI LUT Sequence*:
``apply_voi_lut``), choosing which range of those values is displayed; and for **MONOCHROME1**
(bright = low values, e.g. CR chest films) an inversion. Colour images skip the grey steps: YBR is
converted to RGB by pydicom's decoder, *PALETTE COLOR* through its lookup tables (``apply_color_lut``).

The VOI output range is mapped onto 0..255: for a window, the range pydicom's ``apply_windowing``
maps into (the stored value range, through the rescale); for a VOI LUT, 0..2**bits-1 of the LUT
entries; without any VOI (``voi: none``, or a file that has none), the image's own minimum..maximum.
Enhanced multi-frame objects (enhanced CT / MR, tomosynthesis) keep rescale and window in functional
groups; the chosen frame's are used (:func:`pixel_view`).

Rows stay rows: the array pydicom returns is (Rows, Columns) and becomes an image Rows pixels high,
never transposed (a NIfTI-style reader swaps them).

A manifest names a DICOM image as ``<file>::dicom::frame=<n>::voi=<choice>`` (:func:`dicom_reference`);
a bare ``.dcm`` path means frame 0 with the file's first VOI. ``<choice>`` is ``first`` (the file's
first window or VOI LUT), ``none``, a 0-based index, a window's explanation (``LUNG``, matched
against *Window Center & Width Explanation*), or an explicit window ``<center>/<width>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError

DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
MARKER = "dicom"
SEPARATOR = "::"
DECODER_PACKAGES = "pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg and pylibjpeg-rle (or python-gdcm)"


def dicom_reference(path: str | Path, frame: int = 0, voi: str = "first") -> str:
    """The manifest path of one frame of a DICOM file, displayed through the VOI choice ``voi``."""
    return SEPARATOR.join([str(path), MARKER, f"frame={int(frame)}", f"voi={voi}"])


def parse_reference(path: str) -> tuple[str, int, str] | None:
    """(file, frame, VOI choice) if ``path`` names a DICOM image, else None."""
    parts = path.split(SEPARATOR)
    if len(parts) == 1:
        return (path, 0, "first") if Path(path).suffix.lower() in DICOM_SUFFIXES else None
    if parts[1] != MARKER:
        return None
    options = dict(part.split("=", 1) for part in parts[2:] if "=" in part)
    try:
        frame = int(options.get("frame", 0))
    except ValueError as error:
        raise VlmprobeError(f"DICOM reference {path!r} has a frame that is not a number.", "rebuild the manifest.") from error
    return parts[0], frame, options.get("voi", "first")


def read_dataset(path: str | Path, pixels: bool = True) -> Any:
    """The file as a pydicom Dataset, or a clear error naming the file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=not pixels)
    except FileNotFoundError as error:
        raise VlmprobeError(f"DICOM file {str(path)!r} does not exist.", "restore the file or rebuild the manifest.") from error
    except InvalidDicomError as error:
        raise VlmprobeError(
            f"File {str(path)!r} is not a DICOM file (no 'DICM' preamble: {error}).",
            "remove it from the DICOM folder, or re-export it from the PACS as a DICOM Part 10 file.",
        ) from error
    except Exception as error:  # noqa: BLE001 - truncated or corrupt files fail in many ways inside pydicom
        raise VlmprobeError(
            f"DICOM file {str(path)!r} cannot be read ({type(error).__name__}: {error}).",
            "replace the file (it may be truncated), or leave it out with `on_bad_image: skip`.",
        ) from error


def frame_count(ds: Any) -> int:
    return int(ds.get("NumberOfFrames") or 1)


def _decode(ds: Any, frame: int, path: str) -> np.ndarray:
    from pydicom.pixels import pixel_array

    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise VlmprobeError(f"DICOM file {path!r} holds no image (no Pixel Data; SOP class {ds.get('SOPClassUID', '?')}).", "leave it out of the dataset.")
    if not 0 <= frame < frame_count(ds):
        raise VlmprobeError(f"DICOM file {path!r} has {frame_count(ds)} frame(s); frame {frame} was asked for.", "rebuild the manifest.")
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    try:
        return pixel_array(ds, index=frame if frame_count(ds) > 1 else None)
    except (RuntimeError, NotImplementedError, ImportError) as error:
        text = str(error)
        if "plugin" in text.lower() or "decod" in text.lower() or isinstance(error, ImportError):
            name = syntax.name if syntax is not None else "unknown transfer syntax"
            raise VlmprobeError(
                f"DICOM file {path!r} is compressed as {name} ({syntax}) and no installed pixel-data decoder can read it ({text[:160]}).",
                f"install the pixel-data decoders ({DECODER_PACKAGES}): `pip install pylibjpeg pylibjpeg-libjpeg "
                "pylibjpeg-openjpeg pylibjpeg-rle` (vlmprobe depends on them; an environment without them cannot decode this file), then re-run.",
            ) from error
        raise VlmprobeError(f"DICOM file {path!r}: its pixel data cannot be decoded ({type(error).__name__}: {text[:200]}).",
                            "replace the file, or leave it out with `on_bad_image: skip`.") from error
    except Exception as error:  # noqa: BLE001 - truncated pixel data, wrong lengths
        raise VlmprobeError(
            f"DICOM file {path!r}: its pixel data cannot be decoded ({type(error).__name__}: {str(error)[:200]}).",
            "replace the file (it may be truncated), or leave it out with `on_bad_image: skip`.",
        ) from error


#: What the grey steps read; a view of the file holds only these, so a step never changes the file's dataset.
PIXEL_MODULE = (
    "PhotometricInterpretation", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "RescaleSlope", "RescaleIntercept", "RescaleType", "ModalityLUTSequence",
    "VOILUTSequence", "WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction",
)  # fmt: skip
FUNCTIONAL_GROUPS = ("PixelValueTransformationSequence", "FrameVOILUTSequence")


def pixel_view(ds: Any, frame: int = 0, replace: dict[str, Any] | None = None, drop: tuple[str, ...] = ()) -> Any:
    """A new dataset holding what the grey steps of frame ``frame`` read: the file's pixel and LUT
    attributes, with an enhanced multi-frame object's functional groups (shared, then the frame's own:
    *Pixel Value Transformation* = its rescale, *Frame VOI LUT* = its window) lifted to the top level,
    where pydicom's ``apply_modality_lut`` / ``apply_voi_lut`` read them; then ``replace`` / ``drop``."""
    from pydicom.dataset import Dataset

    view = Dataset()
    if hasattr(ds, "file_meta"):
        view.file_meta = ds.file_meta  # a VOI LUT in OW is read with the file's byte order
    for keyword in PIXEL_MODULE:
        if keyword in ds:
            view[keyword] = ds[keyword]
    groups = [*(ds.get("SharedFunctionalGroupsSequence") or [])[:1]]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if frame < len(per_frame):
        groups.append(per_frame[frame])
    for group in groups:
        for sequence in FUNCTIONAL_GROUPS:
            for element in (group.get(sequence) or [None])[0] or []:
                view[element.keyword] = element
    for keyword in drop:
        if keyword in view:
            del view[keyword]
    for keyword, value in (replace or {}).items():
        setattr(view, keyword, value)
    return view


def windows(ds: Any) -> list[str]:
    """The VOI views a file offers, as text: ``0: 40/400 (BRAIN)``, or ``0: VOI LUT (name)``."""
    views = []
    for i, item in enumerate(ds.get("VOILUTSequence") or []):
        views.append(f"{i}: VOI LUT ({item.get('LUTExplanation', 'unnamed')})")
    if not views and "WindowCenter" in ds:
        centers, widths = _multi(ds.WindowCenter), _multi(ds.WindowWidth)
        names = _multi(ds.get("WindowCenterWidthExplanation") or [])
        views = [f"{i}: {c:g}/{w:g}" + (f" ({names[i]})" if i < len(names) else "") for i, (c, w) in enumerate(zip(centers, widths))]
    return views


def _multi(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        return [value]
    return list(value)


def _window_range(ds: Any) -> tuple[float, float]:
    """The range ``pydicom.pixels.apply_windowing`` maps a window into (its own rule, PS3.3 C.11.2.1.2)."""
    if ds.get("ModalityLUTSequence"):
        low, high = 0.0, float(2 ** ds.ModalityLUTSequence[0].LUTDescriptor[2] - 1)
    elif ds.PixelRepresentation == 0:
        low, high = 0.0, float(2 ** int(ds.BitsStored) - 1)
    else:
        low, high = float(-(2 ** (int(ds.BitsStored) - 1))), float(2 ** (int(ds.BitsStored) - 1) - 1)
    if ds.get("RescaleSlope") is not None and ds.get("RescaleIntercept") is not None:
        low, high = low * float(ds.RescaleSlope) + float(ds.RescaleIntercept), high * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return min(low, high), max(low, high)


def apply_voi(values: np.ndarray, ds: Any, voi: str, path: str) -> tuple[np.ndarray, float, float]:
    """The VOI transform ``voi`` of the modality values: (values, the output range's low, high)."""
    from pydicom.pixels import apply_voi_lut

    voi = str(voi).strip()
    offered = windows(ds)
    has_lut = bool(ds.get("VOILUTSequence"))
    if voi == "first" and not offered:
        voi = "none"
    if voi == "none":
        values = values.astype(np.float64)
        return values, float(values.min()), float(values.max())
    if "/" in voi:  # an explicit window: the file's own VOI LUT Function, through pydicom
        try:
            center, width = (float(part) for part in voi.split("/"))
        except ValueError as error:
            raise VlmprobeError(f"VOI choice {voi!r} is not <center>/<width>.", "write e.g. `voi: 40/400`.") from error
        chosen = pixel_view(ds, replace={"WindowCenter": center, "WindowWidth": width}, drop=("VOILUTSequence", "WindowCenterWidthExplanation"))
        return apply_voi_lut(values, chosen, index=0), *_window_range(chosen)
    if voi == "first":
        index = 0
    elif voi.isdigit():
        index = int(voi)
    else:
        names = [str(n).strip().upper() for n in _multi(ds.get("WindowCenterWidthExplanation") or [])]
        if voi.upper() not in names:
            raise VlmprobeError(
                f"DICOM file {path!r} has no window named {voi!r}; it offers {offered or 'no window'}.",
                "set the dataset's `voi:` to first, none, an index, one of those names, or <center>/<width>.",
            )
        index = names.index(voi.upper())
    if index >= len(offered):
        raise VlmprobeError(
            f"DICOM file {path!r} has no VOI view {index}; it offers {offered or 'none'}.",
            "set the dataset's `voi:` to first, none, an index it has, or an explicit <center>/<width>.",
        )
    out = apply_voi_lut(values, ds, index=index)
    if has_lut:
        return out, 0.0, float(2 ** int(ds.VOILUTSequence[index].LUTDescriptor[2]) - 1)
    return out, *_window_range(ds)


def _to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    scaled = (np.clip(values.astype(np.float64), low, high) - low) * (255.0 / (high - low))
    return np.round(scaled).astype(np.uint8)


def _colour_to_uint8(rgb: np.ndarray, bits: int) -> np.ndarray:
    if rgb.dtype == np.uint8:
        return rgb
    return _to_uint8(rgb, 0.0, float(2**bits - 1))


def display_array(ds: Any, frame: int = 0, voi: str = "first", path: str = "?") -> np.ndarray:
    """Frame ``frame`` as displayed: (Rows, Columns) uint8 for greyscale, (Rows, Columns, 3) for colour."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    pixels = _decode(ds, frame, path)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(pixels, ds)
        return _colour_to_uint8(rgb, int(ds.RedPaletteColorLookupTableDescriptor[2]))
    if int(ds.get("SamplesPerPixel", 1)) == 3:  # RGB, or YBR converted to RGB by pydicom's decoder
        return _colour_to_uint8(pixels, int(ds.BitsStored))
    if not photometric.startswith("MONOCHROME"):
        raise VlmprobeError(f"DICOM file {path!r} has Photometric Interpretation {photometric!r}, which vlmprobe does not display.",
                            "convert it to MONOCHROME2 or RGB, or leave it out.")
    view = pixel_view(ds, frame)
    values = apply_modality_lut(pixels, view)
    values, low, high = apply_voi(values, view, voi, path)
    if photometric == "MONOCHROME1":  # low values are bright
        values = (high + low) - values.astype(np.float64)
    return _to_uint8(values, low, high)


def load_dicom_image(reference: str):
    """The PIL RGB image a DICOM manifest reference names (see :func:`parse_reference`)."""
    from PIL import Image

    path, frame, voi = parse_reference(reference) or (reference, 0, "first")
    array = display_array(read_dataset(path), frame, voi, path)
    image = Image.fromarray(array, mode="L" if array.ndim == 2 else "RGB")
    return image.convert("RGB")
