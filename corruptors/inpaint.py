"""Inpainting corruptors: fill the lesion with plausible tissue instead of an obvious artefact.

``inpaint`` (OpenCV Telea) and ``inpaint_ns`` (Navier-Stokes) propagate the surrounding tissue into
the mask. They work inside the mask's padded bounding box only, and when that box is large they run
at reduced resolution (its longer side ``max_side`` pixels) and upsample the fill: the fill is smooth
anyway, and this keeps 1024-px images fast. Every small pixel that touches the mask is treated as
unknown, so no lesion pixel leaks into the fill.

``inpaint_contralateral`` copies the mirror image of the other lung (reflected about the estimated
midline) into the mask with Poisson blending, so the fill has real lung texture. It refuses (raises
``CorruptionRefused``) when the report marks the other side diseased, when the mask straddles the
midline, or when the mirrored region falls off the image: copying disease in would defeat the point.
"""

from __future__ import annotations

import cv2
import numpy as np

from corruptors.base import (
    CorruptionContext,
    CorruptionRefused,
    check_inputs,
    composite,
    mask_bbox,
    padded_box,
    register,
)
from corruptors.lungs import estimate_lung_fields


def _inpaint_roi(
    roi: np.ndarray, roi_mask: np.ndarray, radius: float, flags: int, max_side: int
) -> np.ndarray:
    """Inpaint ``roi`` where ``roi_mask`` is set; at reduced resolution when the ROI is large."""
    h, w = roi_mask.shape
    m8 = roi_mask.astype(np.uint8) * 255
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return cv2.inpaint(roi, m8, radius, flags)
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(roi, (sw, sh), interpolation=cv2.INTER_AREA)
    small_mask = (cv2.resize(m8, (sw, sh), interpolation=cv2.INTER_AREA) > 0).astype(np.uint8) * 255
    small_mask = cv2.dilate(small_mask, np.ones((3, 3), np.uint8))
    filled = cv2.inpaint(small, small_mask, max(1.0, radius * scale), flags)
    return cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)


class _OpenCVInpaint:
    _flags = cv2.INPAINT_TELEA

    def __init__(self, radius: float = 5.0, max_side: int = 192):
        if not radius > 0 or max_side < 16:
            raise ValueError(f"inpaint needs radius > 0 and max_side >= 16, got {radius}, {max_side}")
        self.radius = float(radius)
        self.max_side = int(max_side)

    def __call__(self, image, mask, rng, context: CorruptionContext | None = None) -> np.ndarray:
        check_inputs(image, mask)
        box = mask_bbox(mask)
        if box is None:
            return image.copy()
        roi_box = padded_box(box, int(2 * self.radius) + 4, image.shape)
        x1, y1, x2, y2 = roi_box
        filled = _inpaint_roi(
            image[y1:y2, x1:x2], mask[y1:y2, x1:x2], self.radius, self._flags, self.max_side
        )
        return composite(image, filled, mask, roi_box)


@register("inpaint")
class TeleaInpaint(_OpenCVInpaint):
    """OpenCV's fast-marching inpainting (Telea 2004)."""

    _flags = cv2.INPAINT_TELEA


@register("inpaint_ns")
class NavierStokesInpaint(_OpenCVInpaint):
    """OpenCV's Navier-Stokes inpainting (Bertalmio et al. 2001)."""

    _flags = cv2.INPAINT_NS


def _to3(a: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(a, cv2.COLOR_GRAY2BGR) if a.ndim == 2 else a


@register("inpaint_contralateral")
class ContralateralInpaint:
    """Mirror healthy tissue from the other lung into the mask, Poisson-blended (cv2.seamlessClone).

    ``max_straddle``: the largest fraction of the mask allowed to overlap its own mirror image (a mask
    crossing the midline would copy itself). ``pad``: context pixels around the mask for blending.
    """

    def __init__(self, max_straddle: float = 0.1, pad: int = 8):
        self.max_straddle = float(max_straddle)
        self.pad = int(pad)

    def __call__(self, image, mask, rng, context: CorruptionContext | None = None) -> np.ndarray:
        check_inputs(image, mask)
        box = mask_bbox(mask)
        if box is None:
            return image.copy()
        context = context or CorruptionContext()
        lungs = context.lungs or estimate_lung_fields(image)
        h, w = mask.shape
        ys, xs = np.nonzero(mask)
        side = lungs.side_of(float(xs.mean()))
        donor = "left" if side == "right" else "right"
        if donor in context.diseased_sides:
            raise CorruptionRefused(
                "contralateral_diseased",
                f"the lesion is in the patient's {side} lung and the report marks the {donor} side diseased too",
            )
        mirror_x = np.rint(2.0 * lungs.midline - np.arange(w)).astype(np.int64)
        mx = mirror_x[xs]
        off_image = float(np.mean((mx < 0) | (mx >= w)))
        if off_image > 0.02:
            raise CorruptionRefused(
                "contralateral_off_image", f"{off_image:.0%} of the mirrored region falls outside the image"
            )
        mx = np.clip(mx, 0, w - 1)
        straddle = float(np.mean(mask[ys, mx]))
        if straddle > self.max_straddle:
            raise CorruptionRefused(
                "contralateral_straddles_midline", f"{straddle:.0%} of the mask overlaps its own mirror image"
            )
        roi_box = padded_box(box, self.pad, image.shape)
        x1, y1, x2, y2 = roi_box
        cols = np.clip(mirror_x[x1:x2], 0, w - 1)
        dst = image[y1:y2, x1:x2]
        src = image[y1:y2][:, cols].copy()
        roi_mask = mask[y1:y2, x1:x2]
        dirty = mask[y1:y2][:, cols] & roi_mask  # donor pixels that are themselves lesion: fill them first
        if dirty.any():
            src = cv2.inpaint(src, dirty.astype(np.uint8) * 255, 3.0, cv2.INPAINT_TELEA)
        # seamlessClone needs 3 channels and a mask clear of the border: pad everything by reflection
        p = 2
        src3 = cv2.copyMakeBorder(_to3(src), p, p, p, p, cv2.BORDER_REFLECT)
        dst3 = cv2.copyMakeBorder(_to3(dst), p, p, p, p, cv2.BORDER_REFLECT)
        m8 = cv2.copyMakeBorder(roi_mask.astype(np.uint8) * 255, p, p, p, p, cv2.BORDER_CONSTANT, value=0)
        bx, by, bw, bh = cv2.boundingRect(m8)
        blended = cv2.seamlessClone(src3, dst3, m8, (bx + bw // 2, by + bh // 2), cv2.NORMAL_CLONE)
        blended = blended[p:-p, p:-p]
        fill = blended[:, :, 0] if image.ndim == 2 else blended
        return composite(image, fill, mask, roi_box)
