"""Where are the lungs? A classical estimate of the two lung fields of a frontal chest X-ray.

No segmentation weights exist here, so the lung fields are fitted from the pixels: the lungs are the
two large regions darker than their surroundings (mediastinum, diaphragm, chest wall) on either side
of the bright spine. The fit runs on a 128-px-wide copy:

1. crop away uniform black margins (scanned films, screenshots);
2. flag the air outside the body (dark pixels connected to the border) as "not lung";
3. midline = brightest column of the mid-thorax column profile (spine + mediastinum);
4. fit one mirror-symmetric pair of boxes that maximises the summed darkness ``t - g`` inside them
   (``t`` a percentile of the thorax), minus a lower-medial corner where the heart and the
   diaphragm dome sit; then let each box move on its own within a tenth of the image.

The result is a pair of boxes, deliberately generous (a lesion region that is too big hides the
lesion; one too small does not). Patient sides: on PA and AP views the patient's right lung is on the
image's LEFT. ``method`` says whether the boxes were fitted or are the fixed anatomical prior used when
the image is too small or featureless to fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

WORK_WIDTH = 128
_STEP = 2
_COARSE = 4
_DARK_PERCENTILE = 50.0
_AIR_FRACTION = 0.4  # outside-body air is darker than this fraction of the thorax median
_CORNER = (0.4, 0.3)  # heart / dome corner: medial 40 % of the width, bottom 30 % of the height


@dataclass(frozen=True)
class LungFields:
    """Estimated lung fields in image pixels; boxes are half-open ``(x1, y1, x2, y2)``."""

    width: int
    height: int
    midline: float
    right: tuple[int, int, int, int]  # the patient's right lung: the image's left on PA/AP
    left: tuple[int, int, int, int]  # the patient's left lung: the image's right
    method: str  # "fitted" or "prior"

    def box(self, side: str) -> tuple[int, int, int, int]:
        if side == "right":
            return self.right
        if side == "left":
            return self.left
        raise ValueError(f"unknown side {side!r}; valid sides: left, right")

    def side_of(self, x: float) -> str:
        """The patient side an image column belongs to (image left of the midline = patient right)."""
        return "right" if x < self.midline else "left"


def _to_gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return image


def _content_box(gray: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box of the image without uniform dark margins (columns/rows that are nearly black)."""
    h, w = gray.shape
    scale = WORK_WIDTH / w
    small = cv2.resize(gray, (WORK_WIDTH, max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ref = float(np.percentile(small, 95))
    if ref <= 0:
        return 0, 0, w, h
    cols = np.flatnonzero(small.mean(axis=0) > 0.15 * ref)
    rows = np.flatnonzero(small.mean(axis=1) > 0.15 * ref)
    if cols.size < 8 or rows.size < 8:
        return 0, 0, w, h
    sh = small.shape[0]
    x1, x2 = int(cols[0] * w / WORK_WIDTH), int(min(w, np.ceil((cols[-1] + 1) * w / WORK_WIDTH)))
    y1, y2 = int(rows[0] * h / sh), int(min(h, np.ceil((rows[-1] + 1) * h / sh)))
    return x1, y1, x2, y2


def _prior(x1: int, y1: int, x2: int, y2: int) -> tuple[float, tuple, tuple]:
    """Typical frontal-view lung boxes as fractions of the (cropped) image."""
    w, h = x2 - x1, y2 - y1

    def b(fx1, fy1, fx2, fy2):
        return (int(x1 + fx1 * w), int(y1 + fy1 * h), int(x1 + fx2 * w), int(y1 + fy2 * h))

    return x1 + 0.5 * w, b(0.10, 0.10, 0.48, 0.85), b(0.52, 0.10, 0.90, 0.85)


def _smooth(profile: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(profile.reshape(1, -1).astype(np.float64), (0, 0), sigmaX=sigma, sigmaY=0).ravel()


def _rect_sum(s: np.ndarray, y1, x1, y2, x2):
    return s[y2, x2] - s[y1, x2] - s[y2, x1] + s[y1, x1]


def _prepare(gray: np.ndarray) -> np.ndarray:
    """Downscale, smooth, standardise over the body, and paint the outside air bright (= not lung)."""
    h, w = gray.shape
    hh = max(1, round(h * WORK_WIDTH / w))
    raw = cv2.resize(gray, (WORK_WIDTH, hh), interpolation=cv2.INTER_AREA)
    g = cv2.GaussianBlur(raw.astype(np.float64), (0, 0), 1.0)
    thorax = raw[int(0.1 * hh) : int(0.85 * hh), int(0.08 * WORK_WIDTH) : int(0.92 * WORK_WIDTH)]
    dark = (raw < _AIR_FRACTION * float(np.median(thorax))).astype(np.uint8)
    _, labels = cv2.connectedComponents(dark, connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    air = np.isin(labels, edge[edge > 0])
    body = g[~air] if (~air).any() else g.ravel()
    g = (g - body.mean()) / (body.std() + 1e-6)
    g[air] = g.max()
    return g


def _fit(g: np.ndarray) -> tuple[float, tuple, tuple] | None:
    """Fit the two lung boxes on the prepared work image; None when no plausible box exists."""
    hh, ww = g.shape
    band = g[int(0.25 * hh) : int(0.65 * hh)]
    profile = _smooth(band.mean(axis=0), ww / 60)
    lo, hi = int(0.35 * ww), int(0.65 * ww)
    mid = lo + int(np.argmax(profile[lo:hi]))
    thorax = g[int(0.1 * hh) : int(0.85 * hh), int(0.08 * ww) : int(0.92 * ww)]
    s = cv2.integral(float(np.percentile(thorax, _DARK_PERCENTILE)) - g)

    def score(x1, x2, y1, y2, image_left: bool):
        w, h = x2 - x1, y2 - y1
        total = _rect_sum(s, y1, np.clip(x1, 0, ww), y2, np.clip(x2, 0, ww))
        cw, ch = (w * _CORNER[0]).astype(int), (h * _CORNER[1]).astype(int)
        cx1, cx2 = (x2 - cw, x2) if image_left else (x1, x1 + cw)
        return total - _rect_sum(s, y2 - ch, np.clip(cx1, 0, ww), y2, np.clip(cx2, 0, ww))

    # 1. a mirror-symmetric pair: inner and outer offsets from the midline, shared top and bottom;
    #    searched coarse (every 4th pixel) then fine (every pixel within 4 of the coarse optimum)
    def symmetric(inner, outer, tops, bottoms):
        di, do, y1, y2 = np.meshgrid(inner, outer, tops, bottoms, indexing="ij")
        ok = (
            (do - di >= 0.12 * ww)
            & (do - di <= 0.45 * ww)
            & (y2 - y1 >= 0.25 * hh)
            & (y2 - y1 <= 0.8 * hh)
            & (mid - do >= 0)
            & (mid + do <= ww)
        )
        if not ok.any():
            return None
        total = score(mid - do, mid - di, y1, y2, True) + score(mid + di, mid + do, y1, y2, False)
        i = np.unravel_index(int(np.argmax(np.where(ok, total, -np.inf))), total.shape)
        return int(inner[i[0]]), int(outer[i[1]]), int(tops[i[2]]), int(bottoms[i[3]])

    coarse = symmetric(
        np.arange(1, max(2, int(0.2 * ww)), _COARSE),
        np.arange(int(0.15 * ww), int(0.5 * ww), _COARSE),
        np.arange(int(0.02 * hh), int(0.45 * hh), _COARSE),
        np.arange(int(0.45 * hh), int(0.98 * hh), _COARSE),
    )
    if coarse is None:
        return None
    d_in, d_out, top, bottom = (
        symmetric(*(np.arange(max(0, v - _COARSE), v + _COARSE + 1) for v in coarse)) or coarse
    )
    # 2. each side refined on its own near the symmetric solution
    rx, ry = max(2, int(0.1 * ww)), max(2, int(0.1 * hh))
    boxes = []
    for image_left, (bx1, bx2) in ((True, (mid - d_out, mid - d_in)), (False, (mid + d_in, mid + d_out))):
        xs1 = np.arange(max(0, bx1 - rx), min(ww, bx1 + rx + 1), _STEP)
        xs2 = np.arange(max(0, bx2 - rx), min(ww, bx2 + rx + 1), _STEP)
        ys1 = np.arange(max(0, top - ry), min(hh, top + ry + 1), _STEP)
        ys2 = np.arange(max(0, bottom - ry), min(hh, bottom + ry + 1), _STEP)
        x1, x2, y1, y2 = np.meshgrid(xs1, xs2, ys1, ys2, indexing="ij")
        side_ok = (x2 - x1 >= 0.1 * ww) & (y2 - y1 >= 0.2 * hh) & ((x2 <= mid) if image_left else (x1 >= mid))
        if not side_ok.any():
            boxes.append((bx1, top, bx2, bottom))
            continue
        j = np.unravel_index(
            int(np.argmax(np.where(side_ok, score(x1, x2, y1, y2, image_left), -np.inf))), x1.shape
        )
        boxes.append((int(xs1[j[0]]), int(ys1[j[2]]), int(xs2[j[1]]), int(ys2[j[3]])))
    return float(mid), boxes[0], boxes[1]


def estimate_lung_fields(image: np.ndarray) -> LungFields:
    """Estimate the lung fields of a frontal chest X-ray (uint8, HxW or HxWx3)."""
    gray = _to_gray(image)
    h, w = gray.shape
    cx1, cy1, cx2, cy2 = _content_box(gray) if min(h, w) >= 32 else (0, 0, w, h)
    crop = gray[cy1:cy2, cx1:cx2]
    fitted = None
    if min(crop.shape) >= 32 and float(crop.std()) > 1.0:
        fitted = _fit(_prepare(crop))
    if fitted is None:
        mid, img_left, img_right = _prior(cx1, cy1, cx2, cy2)
        return LungFields(w, h, mid, img_left, img_right, "prior")
    mid, img_left, img_right = fitted
    sx = (cx2 - cx1) / WORK_WIDTH
    sy = (cy2 - cy1) / max(1, round((cy2 - cy1) * WORK_WIDTH / (cx2 - cx1)))

    def back(b):
        x1, y1, x2, y2 = b
        return (
            int(cx1 + x1 * sx), int(cy1 + y1 * sy),
            min(w, int(np.ceil(cx1 + x2 * sx))), min(h, int(np.ceil(cy1 + y2 * sy))),
        )  # fmt: skip

    return LungFields(w, h, cx1 + mid * sx, back(img_left), back(img_right), "fitted")
