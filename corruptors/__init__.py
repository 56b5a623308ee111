"""Lesion-targeted image corruptors for FiRe-MPO's visual term (see corruptors/base.py for the contract).

Registered methods: ``noise`` (default, Gaussian sigma 45), ``blur``, ``black``, ``inpaint`` (Telea),
``inpaint_ns`` (Navier-Stokes), ``inpaint_contralateral`` (mirrored healthy lung, Poisson-blended) and
``inpaint_diffusion`` (optional: diffusers + a local model folder).
"""

from corruptors import diffusion, fills, inpaint  # noqa: F401  (importing registers the corruptors)
from corruptors.base import (
    CORRUPTORS,
    CorruptionContext,
    CorruptionRefused,
    Corruptor,
    CorruptorUnavailable,
    get_corruptor,
    seed_for,
)

__all__ = [
    "CORRUPTORS",
    "CorruptionContext",
    "CorruptionRefused",
    "Corruptor",
    "CorruptorUnavailable",
    "get_corruptor",
    "seed_for",
]
