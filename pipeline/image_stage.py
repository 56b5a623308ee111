"""The image half of a pair: load a sample's images, and make their lesion-corrupted versions.

``load_images`` turns the manifest's image paths into PNG bytes in the Hugging Face ``Image`` layout
(``{bytes, path}``) plus the uint8 pixels; a missing, truncated or non-image file is a reject of that
sample only (``ImageError`` with reason ``image_unreadable``), and a relative path that climbs out of
the manifest's folder, by ``..`` or through a symlink, is refused before anything is read
(``path_outside_manifest``). DICOM files are decoded by ``pipeline.dicom`` (windowed to 8 bits).

``corrupt_images`` builds one lesion mask per image, by preference from

1. ``annotation``: the sample's boxes and polygons, rasterised and grown by ``margin_fraction`` of the
   image's shorter side (16 px on a 1024 px image by default);
2. ``report``: the anatomy of the findings (``locations``) mapped onto lung fields estimated from
   the image itself (patient right = image left on PA/AP);
3. ``fallback``: the whole image, with mild noise (sigma ``fallback_sigma``, 12 as in FiRe-MPO)
   whatever ``method`` is, because a whole-image black or inpaint fill would only destroy the image.

and applies the named corruptor inside it. Pixels outside the mask are byte-identical to the input.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from corruptors import CorruptionContext, CorruptionRefused, get_corruptor
from corruptors.anatomy import diseased_sides, location_boxes, validate_location
from corruptors.lungs import estimate_lung_fields
from corruptors.masks import LesionError, boxes_mask, lesion_masks, scaled_margin
from corruptors.png import encode_mask, encode_png
from pipeline.dicom import DicomError, decode_dicom, looks_like_dicom
from schemas.pair import Corruption, ImageRef
from schemas.sample import Lesion

MAX_IMAGE_BYTES = 256 * 1024 * 1024
_KEEP_MODES = ("L", "RGB")


class ImageError(Exception):
    """A sample whose images cannot be used; ``reason`` is the rejects-ledger code, ``detail`` one line."""

    def __init__(self, reason: str, detail: str):
        detail = " ".join(str(detail).split())  # one line, whatever the underlying error printed
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------------------------------------- loading


def _resolve(path: str, manifest_dir: Path, allow_absolute: bool) -> Path:
    """The file a manifest path names; refuses (without reading the file) paths outside the folder.

    A relative path is checked twice: lexically ('..' collapsed), then with symlinks resolved, so a
    link inside the folder that points outside it is refused like '../' (a manifest must not read
    what its folder does not hold). Absolute paths are the way to name files elsewhere.
    """
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise ImageError("image_unreadable", f"image path {path!r} is empty or not a string")
    p = Path(path)
    if p.is_absolute():
        if not allow_absolute:
            raise ImageError(
                "path_outside_manifest", f"image {path!r} is absolute and absolute paths are not allowed"
            )
        return Path(os.path.normpath(p))
    base = os.path.normpath(os.path.abspath(manifest_dir))
    target = os.path.normpath(os.path.join(base, path))
    if os.path.commonpath([base, target]) != base:
        raise ImageError("path_outside_manifest", f"image {path!r} escapes the manifest folder {base}")
    real_base, real = os.path.realpath(base), os.path.realpath(target)
    if os.path.commonpath([real_base, real]) != real_base:
        raise ImageError("path_outside_manifest", f"image {path!r} is a symlink to {real}, outside the manifest "
                                                  f"folder {base} (give an absolute path instead)")
    return Path(target)


def _pixels(im: Image.Image) -> Image.Image:
    """Normalise a decoded image to mode L (grayscale) or RGB, keeping grayscale grayscale."""
    if im.mode in _KEEP_MODES:
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit / float radiographs: stretch to 8 bits
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        return Image.fromarray(np.rint(a).astype(np.uint8), mode="L")
    if im.mode in ("1", "LA", "La"):
        return im.convert("L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    rgb = im.convert("RGB")
    a = np.asarray(rgb)
    if (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all():
        return rgb.convert("L")  # a palette/alpha image that is really gray stays gray
    return rgb


def load_image(path: str, manifest_dir: Path, *, allow_absolute: bool = True,
               info: list[dict] | None = None) -> tuple[ImageRef, np.ndarray]:
    """One manifest image -> (ImageRef with PNG bytes, uint8 HxW or HxWx3 pixels).

    ``info``: when a list, gets one dict per image (empty for a plain image; for DICOM the
    photometric interpretation, bits, window used and pixel spacing) for the pair's ``meta``."""
    target = _resolve(path, Path(manifest_dir), allow_absolute)
    try:
        size = target.stat().st_size
        if size > MAX_IMAGE_BYTES:
            raise ImageError("image_unreadable", f"image {path!r} ({target}) is {size} bytes, over the limit")
        data = target.read_bytes()
    except ImageError:
        raise
    except OSError as e:
        raise ImageError(
            "image_unreadable", f"image {path!r} ({target}): {e.strerror or type(e).__name__}"
        ) from e
    if looks_like_dicom(data, str(target)):
        try:
            arr, details = decode_dicom(data)
        except DicomError as e:
            raise ImageError("image_unreadable", f"image {path!r} ({target}): {e}") from e
        if info is not None:
            info.append(details)
        return ImageRef(bytes=encode_png(arr, fast=False), path=path), arr
    if info is not None:
        info.append({})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            fmt = im.format
            im.load()
            rotated = _has_rotation(im)
            norm = _pixels(ImageOps.exif_transpose(im) if rotated else im)
    except Exception as e:  # PIL raises many types for bad files; all mean "unreadable"
        raise ImageError(
            "image_unreadable", f"image {path!r} ({target}) is not a readable image: {type(e).__name__}: {e}"
        ) from e
    arr = np.asarray(norm, dtype=np.uint8).copy()
    if fmt == "PNG" and norm is im and not rotated and _plain_8bit_png(data):
        png = data  # already an 8-bit gray or RGB PNG: the file's own bytes
    else:
        png = encode_png(arr, fast=False)
    return ImageRef(bytes=png, path=path), arr


def _plain_8bit_png(data: bytes) -> bool:
    """IHDR says 8 bits per sample, gray (0) or RGB (2): the decoded pixels are exactly the file's."""
    return len(data) > 26 and data[12:16] == b"IHDR" and data[24] == 8 and data[25] in (0, 2)


def _has_rotation(im: Image.Image) -> bool:
    try:
        return im.getexif().get(0x0112, 1) not in (1, None)
    except Exception:
        return False


def load_images(
    paths: list[str], manifest_dir: Path, *, allow_absolute: bool = True, info: list[dict] | None = None
) -> list[tuple[ImageRef, np.ndarray]]:
    """All images of one sample, in order; the first unusable one raises ``ImageError``.

    ``ImageRef.path`` is the manifest's path string; ``bytes`` are the file's own PNG bytes when it is
    an 8-bit gray or RGB PNG, else a PNG re-encoding (mode L for grayscale). Absolute paths are
    allowed by the manifest contract; pass ``allow_absolute=False`` to confine reads to the folder.
    """
    return [load_image(p, manifest_dir, allow_absolute=allow_absolute, info=info) for p in paths]


# ----------------------------------------------------------------------------------------- corrupting


_CACHE: dict[tuple, object] = {}


def _corruptor(method: str, options: dict):
    """Corruptors are built once per (method, options): a diffusion pipeline must not reload per sample."""
    try:
        key = (method, tuple(sorted(options.items())))
        hash(key)
    except TypeError:
        return get_corruptor(method, **options)
    if key not in _CACHE:
        _CACHE[key] = get_corruptor(method, **options)
    return _CACHE[key]


def _validate(images: Sequence[np.ndarray]) -> None:
    for i, a in enumerate(images):
        if (
            not isinstance(a, np.ndarray)
            or a.dtype != np.uint8
            or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3))
        ):
            raise ValueError(
                f"images[{i}] must be a uint8 HxW or HxWx3 array, got {getattr(a, 'dtype', type(a))} "
                f"{getattr(a, 'shape', '')}"
            )


def corrupt_images(
    images: list[np.ndarray],
    lesions: list[Lesion],
    locations: list[dict],
    *,
    method: str = "noise",
    margin_fraction: float = 0.016,
    seed: int,
    sigma: float = 45.0,
    fallback_sigma: float = 12.0,
    corruptor_options: dict | None = None,
) -> tuple[list[ImageRef], Corruption]:
    """Corrupted PNGs (same order and size as ``images``) and the ``corruption`` record describing them.

    ``lesions``: ``schemas.sample.Lesion`` objects; ``locations``: anatomy of the findings the edits are
    about (see corruptors/anatomy.py); ``seed``: from the pair id (``corruptors.seed_for``), image ``i``
    uses ``numpy.random.default_rng([seed, i])``. ``corruptor_options`` go to the corruptor's
    constructor (``sigma`` is passed to ``noise``). A corruptor that refuses (e.g. contralateral
    inpainting with both lungs diseased) yields no corrupted images and ``corruption.reason`` set to
    its code. Raises ``ImageError('bad_lesion', ...)`` for unusable lesion geometry.
    """
    if not images:
        return [], Corruption(method=None, mask_fraction=0.0, seed=seed, reason="no_image")
    _validate(images)
    shapes = [a.shape[:2] for a in images]
    margins = [scaled_margin(margin_fraction, s) for s in shapes]
    try:
        ann_masks, ann_regions = lesion_masks(lesions or [], shapes, margins)
    except LesionError as e:
        raise ImageError(e.reason, e.detail) from e
    for loc in locations or []:  # fail on bad anatomy before any work, not halfway through
        validate_location(loc)
    options = dict(corruptor_options or {})
    if method == "noise":
        options.setdefault("sigma", sigma)
    corruptor = _corruptor(method, options)
    fallback = _corruptor("noise", {"sigma": fallback_sigma})
    context_sides = diseased_sides(locations or [])

    sources: list[str] = []
    masks: list[np.ndarray] = []
    regions: list[list[int]] = []
    outputs: list[np.ndarray] = []
    refused: CorruptionRefused | None = None
    for i, img in enumerate(images):
        rng = np.random.default_rng([int(seed) % 2**64, i])
        lungs = None
        if ann_masks[i] is not None:
            source, mask, boxes = "annotation", ann_masks[i], ann_regions[i]
        elif locations:
            lungs = estimate_lung_fields(img)
            raw = [b for loc in locations for b in location_boxes(loc, lungs)]
            mask, boxes = boxes_mask(raw, shapes[i], margins[i])
            source = "report" if mask.any() else "fallback"
        else:
            source = "fallback"
        if source == "fallback":
            h, w = shapes[i]
            mask, boxes = np.ones(shapes[i], dtype=bool), [(0, 0, w, h)]
            out = fallback(img, mask, rng)
        elif refused is None:
            try:
                out = corruptor(img, mask, rng, CorruptionContext(lungs=lungs, diseased_sides=context_sides))
            except CorruptionRefused as e:
                refused, out = e, None
        else:
            out = None
        sources.append(source)
        masks.append(mask)
        for b in boxes:  # several findings in one zone give one region
            box = [int(v) for v in b]
            if box not in regions:
                regions.append(box)
        outputs.append(out)

    total = sum(m.size for m in masks)
    uniq = list(dict.fromkeys(sources))
    record = Corruption(
        method=method if any(s != "fallback" for s in sources) else "noise",
        mask_fraction=float(sum(int(np.count_nonzero(m)) for m in masks) / total),
        regions=regions,
        source=uniq[0] if len(uniq) == 1 else ",".join(sources),
        seed=int(seed),
        masks=[encode_mask(m) for m in masks],
    )
    if refused is not None:
        record.reason = refused.reason
        return [], record
    return [ImageRef(bytes=encode_png(o), path=None) for o in outputs], record
