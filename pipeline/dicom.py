"""DICOM images as 8-bit grayscale pixels, windowed the way the file asks to be displayed.

Why: hospitals hand over DICOM, not PNG. A pair's clean image must show the anatomy a radiologist
sees, so the stored values go through the DICOM display chain (PS3.3 C.11):

1. the modality LUT (``RescaleSlope``/``RescaleIntercept`` or a Modality LUT Sequence);
2. the VOI transform: the file's VOI LUT Sequence when it has one, else its first
   ``WindowCenter``/``WindowWidth`` (``LINEAR``, ``LINEAR_EXACT`` or ``SIGMOID``), else the full range
   of the values present (min to max: 12- and 16-bit data are scaled, never clipped, so a bright or
   dark lesion keeps its contrast);
3. ``MONOCHROME1`` (white = low values) is inverted, so bone is white in every output.

The pixel spacing (``PixelSpacing``, else ``ImagerPixelSpacing``) is returned with the pixels and kept
in the pair's ``meta``. A file without pixel data (a structured report, a presentation state) or
with pixels pydicom cannot decode raises ``DicomError``.
"""

from __future__ import annotations

import io

import numpy as np

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")


class DicomError(ValueError):
    """A DICOM file that cannot become an image; the message is one line."""


def looks_like_dicom(data: bytes, name: str = "") -> bool:
    """A Part 10 file ('DICM' after the 128-byte preamble), or a file named like one."""
    return data[128:132] == b"DICM" or name.lower().endswith(DICOM_SUFFIXES)


def _first(value) -> float:
    """WindowCenter/WindowWidth may be multi-valued (several presets): the first is the default."""
    from pydicom.multival import MultiValue

    return float(value[0]) if isinstance(value, MultiValue | list | tuple) else float(value)


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """The VOI window of PS3.3 C.11.2.1.2 onto [0, 255] (float)."""
    x = values.astype(np.float64)
    function = (function or "LINEAR").upper()
    if function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR_EXACT":
        if width <= 0:
            raise DicomError(f"WindowWidth {width} must be > 0")
        return np.clip((x - center) / width + 0.5, 0.0, 1.0) * 255.0
    if width < 1:
        raise DicomError(f"WindowWidth {width} must be >= 1 for a LINEAR window")
    if width == 1:
        return np.where(x < center - 0.5, 0.0, 255.0)
    return np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0) * 255.0


def _full_range(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(x, dtype=np.float64)


def decode_dicom(data: bytes) -> tuple[np.ndarray, dict]:
    """DICOM bytes -> (uint8 HxW, or HxWx3 for colour, pixels; info for the pair's meta)."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as e:  # noqa: BLE001 - pydicom raises many types for a bad file
        raise DicomError(f"not a readable DICOM file: {type(e).__name__}: {e}") from e
    if "PixelData" not in ds:
        sop = getattr(ds, "SOPClassUID", None)
        what = f" ({sop.name})" if sop is not None and hasattr(sop, "name") else ""
        raise DicomError(f"a DICOM file without pixel data{what}: not an image")
    try:
        arr = ds.pixel_array
    except Exception as e:  # noqa: BLE001 - missing decoder, truncated pixel data, bad attributes
        raise DicomError(f"DICOM pixel data cannot be decoded: {type(e).__name__}: {e}") from e
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        arr = arr[0]  # a radiograph has one frame; a multi-frame file gives its first
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    info: dict = {"format": "DICOM", "photometric": photometric, "bits_stored": int(getattr(ds, "BitsStored", 0) or 0),
                  "rows": int(arr.shape[0]), "columns": int(arr.shape[1])}
    if frames > 1:
        info["frames"] = frames
    spacing = getattr(ds, "PixelSpacing", None) or getattr(ds, "ImagerPixelSpacing", None)
    if spacing is not None:
        info["pixel_spacing_mm"] = [float(v) for v in spacing]
    if arr.ndim == 3:  # colour (RGB, or YBR already converted by pydicom)
        out = arr.astype(np.float64)
        if out.max() > 255:
            out = _full_range(out)
        info["window"] = "none"
        return np.rint(out).clip(0, 255).astype(np.uint8), info
    if not photometric.startswith("MONOCHROME"):
        raise DicomError(f"PhotometricInterpretation {photometric!r} is not supported")
    values = apply_modality_lut(arr, ds)
    if "VOILUTSequence" in ds:
        lut = ds.VOILUTSequence[0]
        bits = int(lut.LUTDescriptor[2])
        out = apply_voi(values, ds).astype(np.float64) * (255.0 / (2**bits - 1))
        info["window"] = "voi_lut"
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(getattr(ds, "VOILUTFunction", "LINEAR") or "LINEAR")
        out = window(values, center, width, function)
        info["window"] = {"center": center, "width": width, "function": function.upper()}
    else:
        out = _full_range(values.astype(np.float64))
        info["window"] = "full_range"
    if photometric == "MONOCHROME1":
        out = 255.0 - out
    return np.rint(out).clip(0, 255).astype(np.uint8), info
