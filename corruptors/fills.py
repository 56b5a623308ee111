"""The simple corruptors: Gaussian noise (FiRe-MPO's best), blur and a black fill inside the mask."""

from __future__ import annotations

import cv2
import numpy as np

from corruptors.base import CorruptionContext, check_inputs, composite, mask_bbox, padded_box, register


@register("noise")
class GaussianNoise:
    """Add N(0, sigma) gray levels (of 255) inside the mask; the same noise on every channel.

    sigma 45 is the paper's best lesion setting; the whole-image fallback uses 12.
    """

    def __init__(self, sigma: float = 45.0):
        if not sigma > 0:
            raise ValueError(f"noise sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)

    def __call__(self, image, mask, rng, context: CorruptionContext | None = None) -> np.ndarray:
        check_inputs(image, mask)
        out = image.copy()
        n = int(np.count_nonzero(mask))
        if n == 0:
            return out
        noise = rng.standard_normal(n, dtype=np.float32) * np.float32(self.sigma)
        vals = image[mask].astype(np.float32)
        if vals.ndim == 2:  # HxWx3: one noise value per pixel, shared by the channels
            noise = noise[:, None]
        out[mask] = np.clip(np.rint(vals + noise), 0, 255).astype(np.uint8)
        return out


@register("blur")
class Blur:
    """Replace the mask with a strong Gaussian blur of its surroundings.

    ``sigma`` in pixels; None scales it with the mask (a tenth of its larger side, 3 to 40 px) so the
    lesion's texture is gone whatever its size. Only the mask's padded box is filtered, and a large
    sigma is applied on a downsampled copy (sigma 3 there): the result is smooth either way, and a
    40-px kernel on a 1024-px image would otherwise dominate the run time.
    """

    _SMALL_SIGMA = 3.0

    def __init__(self, sigma: float | None = None):
        if sigma is not None and not sigma > 0:
            raise ValueError(f"blur sigma must be > 0, got {sigma}")
        self.sigma = sigma

    def __call__(self, image, mask, rng, context: CorruptionContext | None = None) -> np.ndarray:
        check_inputs(image, mask)
        box = mask_bbox(mask)
        if box is None:
            return image.copy()
        x1, y1, x2, y2 = box
        sigma = self.sigma or float(np.clip(0.1 * max(x2 - x1, y2 - y1), 3.0, 40.0))
        roi_box = padded_box(box, int(3 * sigma) + 1, image.shape)
        rx1, ry1, rx2, ry2 = roi_box
        roi = image[ry1:ry2, rx1:rx2]
        factor = sigma / self._SMALL_SIGMA
        if factor <= 1.5:
            blurred = cv2.GaussianBlur(roi, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        else:
            h, w = roi.shape[:2]
            small = cv2.resize(
                roi, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA
            )
            small = cv2.GaussianBlur(small, (0, 0), self._SMALL_SIGMA, borderType=cv2.BORDER_REFLECT)
            blurred = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        return composite(image, blurred, mask, roi_box)


@register("black")
class Black:
    """Set the mask to a constant (black by default): the bluntest way to remove the evidence."""

    def __init__(self, value: int = 0):
        if not 0 <= int(value) <= 255:
            raise ValueError(f"black fill value must be in 0..255, got {value}")
        self.value = int(value)

    def __call__(self, image, mask, rng, context: CorruptionContext | None = None) -> np.ndarray:
        check_inputs(image, mask)
        out = image.copy()
        out[mask] = self.value
        return out
