"""Lesion masks: annotated boxes and polygons rasterised and grown, or report regions, or the whole image.

Coordinates are pixels of the image; boxes are ``[x1, y1, x2, y2]`` and rasterise to the half-open
pixel range ``[floor(x1), ceil(x2))``. A box or polygon partly outside the image is clipped; one that
is degenerate (zero area, ``x2 <= x1``, fewer than 3 points, non-finite numbers) or lies entirely
outside the image raises ``LesionError`` (reject reason ``bad_lesion``), because a mask that silently
misses the lesion would teach the model the wrong thing. The mask is grown by a margin so the lesion's
edge is hidden too; the margin is a fraction of the image's shorter side (``scaled_margin``), because a
fixed 16 px is 5% of a 300 px image and nothing on a 3,000 px DICOM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

Box = tuple[int, int, int, int]
_SHIFT = 4  # fillPoly sub-pixel bits: polygon vertices are placed to 1/16 px


class LesionError(ValueError):
    """A lesion whose geometry cannot become a mask; ``reason`` is the rejects-ledger code."""

    reason = "bad_lesion"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


def _finite(values: Sequence, what: str, where: str) -> list[float]:
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise LesionError(f"{where}: {what} has non-numeric values {list(values)!r}") from None
    if not all(math.isfinite(v) for v in out):
        raise LesionError(f"{where}: {what} has non-finite values {out}")
    return out


def scaled_margin(fraction: float, shape: tuple[int, int]) -> int:
    """Pixels to grow a lesion by on an image of ``shape``: ``fraction`` of its shorter side, rounded."""
    if not 0 <= fraction < 1:
        raise ValueError(f"margin fraction must be in [0, 1), got {fraction}")
    return int(round(fraction * min(shape[0], shape[1])))


def _grow(box: Box, margin: int, w: int, h: int) -> Box:
    x1, y1, x2, y2 = box
    return max(0, x1 - margin), max(0, y1 - margin), min(w, x2 + margin), min(h, y2 + margin)


def rasterise_box(box: Sequence, shape: tuple[int, int], margin: int, where: str) -> tuple[np.ndarray, Box]:
    """Mask and clipped, grown region of one ``[x1, y1, x2, y2]`` box on an image of ``shape`` (h, w)."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise LesionError(f"{where}: box must be [x1, y1, x2, y2], got {box!r}")
    x1, y1, x2, y2 = _finite(box, "box", where)
    if x2 <= x1 or y2 <= y1:
        raise LesionError(
            f"{where}: box {[x1, y1, x2, y2]} has zero or negative area (needs x2 > x1 and y2 > y1)"
        )
    h, w = shape
    ix1, iy1 = max(0, math.floor(x1)), max(0, math.floor(y1))
    ix2, iy2 = min(w, math.ceil(x2)), min(h, math.ceil(y2))
    if ix2 <= ix1 or iy2 <= iy1:
        raise LesionError(f"{where}: box {[x1, y1, x2, y2]} lies entirely outside the {w}x{h} image")
    region = _grow((ix1, iy1, ix2, iy2), margin, w, h)
    mask = np.zeros(shape, dtype=bool)
    mask[region[1] : region[3], region[0] : region[2]] = True
    return mask, region


def rasterise_polygon(
    polygon: Sequence, shape: tuple[int, int], margin: int, where: str
) -> tuple[np.ndarray, Box]:
    """Mask and clipped, grown bounding region of one polygon ``[[x, y], ...]``."""
    if not isinstance(polygon, (list, tuple)) or len(polygon) < 3:
        raise LesionError(f"{where}: polygon needs at least 3 [x, y] points, got {polygon!r}")
    pts = []
    for p in polygon:
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise LesionError(f"{where}: polygon point must be [x, y], got {p!r}")
        pts.append(_finite(p, "polygon", where))
    arr = np.asarray(pts, dtype=np.float64)
    xs, ys = arr[:, 0], arr[:, 1]
    area = 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))
    if area <= 0:
        raise LesionError(f"{where}: polygon has zero area (its points are collinear or repeated)")
    h, w = shape
    if xs.max() <= 0 or ys.max() <= 0 or xs.min() >= w or ys.min() >= h:
        raise LesionError(f"{where}: polygon lies entirely outside the {w}x{h} image")
    # rasterise inside the polygon's own padded box so a far-away vertex costs nothing
    bx1, by1 = max(0, math.floor(xs.min()) - margin - 1), max(0, math.floor(ys.min()) - margin - 1)
    bx2, by2 = min(w, math.ceil(xs.max()) + margin + 2), min(h, math.ceil(ys.max()) + margin + 2)
    local = np.zeros((by2 - by1, bx2 - bx1), dtype=np.uint8)
    fixed = np.rint((arr - [bx1, by1]) * (1 << _SHIFT)).astype(np.int64)
    fixed = np.clip(fixed, -(1 << 28), 1 << 28).astype(np.int32)  # cv2 coordinates must fit in int32
    cv2.fillPoly(local, [fixed.reshape(-1, 1, 2)], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    if not local.any():
        raise LesionError(f"{where}: polygon covers no whole pixel of the {w}x{h} image")
    if margin > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        local = cv2.dilate(local, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    mask = np.zeros(shape, dtype=bool)
    mask[by1:by2, bx1:bx2] = local.astype(bool)
    rows, cols = np.flatnonzero(local.any(axis=1)), np.flatnonzero(local.any(axis=0))
    region = (bx1 + int(cols[0]), by1 + int(rows[0]), bx1 + int(cols[-1]) + 1, by1 + int(rows[-1]) + 1)
    return mask, region


def lesion_masks(
    lesions: Sequence, shapes: Sequence[tuple[int, int]], margin: int | Sequence[int]
) -> tuple[list[np.ndarray | None], list[list[Box]]]:
    """Per image: the union mask of its lesions (None when it has none) and the regions drawn.

    ``lesions`` are ``schemas.sample.Lesion`` (or anything with ``box``, ``polygon``, ``image``); a
    polygon is used when present (it is tighter), else the box. ``margin``: pixels, one for all images
    or one per image (``scaled_margin`` of each image's shape).
    """
    margins = [int(margin)] * len(shapes) if isinstance(margin, int | float) else [int(m) for m in margin]
    if len(margins) != len(shapes) or any(m < 0 for m in margins):
        raise ValueError(f"margin must be >= 0, one per image, got {margin}")
    masks: list[np.ndarray | None] = [None] * len(shapes)
    regions: list[list[Box]] = [[] for _ in shapes]
    for k, lesion in enumerate(lesions):
        label = getattr(lesion, "label", None)
        where = f"lesions[{k}]" + (f" ({label})" if label else "")
        idx = getattr(lesion, "image", 0)
        if not isinstance(idx, int) or not 0 <= idx < len(shapes):
            raise LesionError(f"{where}: image index {idx!r} but the sample has {len(shapes)} image(s)")
        polygon, box = getattr(lesion, "polygon", None), getattr(lesion, "box", None)
        if polygon is not None:
            mask, region = rasterise_polygon(polygon, shapes[idx], margins[idx], where)
        elif box is not None:
            mask, region = rasterise_box(box, shapes[idx], margins[idx], where)
        else:
            raise LesionError(f"{where}: has neither a box nor a polygon")
        masks[idx] = mask if masks[idx] is None else (masks[idx] | mask)
        regions[idx].append(region)
    return masks, regions


def boxes_mask(boxes: Sequence[Box], shape: tuple[int, int], margin: int) -> tuple[np.ndarray, list[Box]]:
    """Union mask of already-clipped integer boxes (report regions), each grown by ``margin``."""
    h, w = shape
    mask = np.zeros(shape, dtype=bool)
    grown = []
    for b in boxes:
        x1, y1, x2, y2 = _grow(b, margin, w, h)
        if x2 > x1 and y2 > y1:
            mask[y1:y2, x1:x2] = True
            grown.append((x1, y1, x2, y2))
    return mask, grown
