"""The corruptor extension point: a small Protocol, a registry by name, and the rules every one obeys.

A corruptor hides the visual evidence inside a lesion mask so that the FiRe-MPO visual term can ask
"does the model still prefer the right answer without seeing the lesion?". The contract, checked by
one parametrised test over every registered name, is:

- it returns a new array of the same shape and dtype (uint8, HxW or HxWx3) and never mutates its input;
- every pixel outside the mask is byte-identical to the input (``composite`` enforces it);
- all randomness comes from the ``numpy.random.Generator`` it is given (seeded from the pair id), so
  the same seed gives the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from corruptors.lungs import LungFields


class CorruptionRefused(Exception):
    """A corruptor declines this image/mask (e.g. no healthy contralateral tissue to copy from).

    Not a bug and not a bad sample: the caller records ``reason`` and makes no corrupted image.
    """

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class CorruptorUnavailable(RuntimeError):
    """A corruptor whose optional dependency or local model folder is missing (nothing is downloaded)."""


@dataclass(frozen=True)
class CorruptionContext:
    """What a corruptor may know beyond the pixels: the image's lung fields and the diseased sides.

    ``diseased_sides`` holds patient sides (``"left"``/``"right"``) that the report marks abnormal.
    """

    lungs: LungFields | None = None
    diseased_sides: frozenset[str] = field(default_factory=frozenset)


@runtime_checkable
class Corruptor(Protocol):
    name: str

    def __call__(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        rng: np.random.Generator,
        context: CorruptionContext | None = None,
    ) -> np.ndarray: ...


CORRUPTORS: dict[str, Callable[..., Corruptor]] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: make a corruptor constructible by ``get_corruptor(name, **params)``."""

    def deco(cls: type) -> type:
        if name in CORRUPTORS:
            raise ValueError(f"corruptor {name!r} is registered twice")
        cls.name = name
        CORRUPTORS[name] = cls
        return cls

    return deco


def get_corruptor(name: str, **params) -> Corruptor:
    """Build the corruptor registered as ``name``; an unknown name lists the valid ones."""
    try:
        factory = CORRUPTORS[name]
    except KeyError:
        raise ValueError(
            f"unknown corruption method {name!r}; valid methods: {', '.join(sorted(CORRUPTORS))}"
        ) from None
    return factory(**params)


def seed_for(pair_id: str) -> int:
    """A stable non-negative int63 seed from a pair id (fits the int64 ``corruption.seed`` column)."""
    return int.from_bytes(hashlib.sha256(pair_id.encode("utf-8")).digest()[:8], "big") >> 1


def check_inputs(image: np.ndarray, mask: np.ndarray) -> None:
    """Reject arrays the corruptors are not written for, with a one-line reason."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError(f"image must be a uint8 numpy array, got {getattr(image, 'dtype', type(image))}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"image must be HxW or HxWx3, got shape {image.shape}")
    if mask.shape != image.shape[:2] or mask.dtype != np.bool_:
        raise ValueError(
            f"mask must be a bool array of shape {image.shape[:2]}, got {mask.dtype} {mask.shape}"
        )


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Half-open bounding box ``(x1, y1, x2, y2)`` of the True pixels, or None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def padded_box(box: tuple[int, int, int, int], pad: int, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    h, w = shape[:2]
    return max(0, x1 - pad), max(0, y1 - pad), min(w, x2 + pad), min(h, y2 + pad)


def composite(
    image: np.ndarray, fill: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """A copy of ``image`` with ``fill`` inside ``mask`` only: the one place outside pixels are decided.

    ``fill`` covers the whole image, or just ``box`` (x1, y1, x2, y2) when given.
    """
    out = image.copy()
    if box is None:
        out[mask] = fill[mask]
    else:
        x1, y1, x2, y2 = box
        m = mask[y1:y2, x1:x2]
        out[y1:y2, x1:x2][m] = fill[m]
    return out
