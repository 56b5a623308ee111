"""The sampler extension point: a small Protocol and a registry by name.

A sampler turns samples without responses into on-policy responses. Backends that need heavy
packages (transformers, vLLM) are registered as ``"module:attribute"`` strings and imported only when
chosen, so the CPU replay path never imports them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pipeline.config import SamplerConfig
    from schemas.sample import Sample


class SamplerError(RuntimeError):
    """A sampler that cannot be built or run; the message is one line."""


class TransientSamplerError(SamplerError):
    """A failure worth retrying (a server that timed out or dropped the connection)."""


@runtime_checkable
class Sampler(Protocol):
    """Generates ``n`` responses per sample.

    ``seed`` is the run seed: implementations derive each sample's seed from ``(seed, sample_id)``
    so that batching and ``--resume`` never change what a sample gets.
    """

    name: str

    def sample(self, samples: list[Sample], n: int, seed: int) -> list[list[str]]: ...


SamplerFactory = Callable[["SamplerConfig"], Sampler]

_REGISTRY: dict[str, SamplerFactory | str] = {}


def register_sampler(name: str, factory: SamplerFactory | str) -> None:
    """Register ``factory(config) -> Sampler``, or a lazy ``"package.module:attribute"`` path to it."""
    if not name or not isinstance(name, str):
        raise ValueError("a sampler name must be a non-empty string")
    _REGISTRY[name] = factory


def sampler_names() -> list[str]:
    return sorted(_REGISTRY)


def _resolve(name: str) -> SamplerFactory:
    factory = _REGISTRY[name]
    if isinstance(factory, str):
        module_name, _, attr = factory.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise SamplerError(f"sampler {name!r} is not available: cannot import {module_name} ({e})") from e
        try:
            factory = getattr(module, attr)
        except AttributeError as e:
            raise SamplerError(f"sampler {name!r} is not available: {module_name} has no {attr!r}") from e
        _REGISTRY[name] = factory
    return factory


def get_sampler(config: SamplerConfig) -> Sampler:
    """Build the sampler the config names; an unknown name lists the valid ones."""
    if config.name not in _REGISTRY:
        raise SamplerError(f"unknown sampler {config.name!r}; valid samplers: {', '.join(sampler_names())}")
    return _resolve(config.name)(config)


def require_model_dir(sampler: str, model) -> Path:
    """The model folder a sampler was given, or a one-line error that says what is missing."""
    if not model:
        raise SamplerError(f"sampler {sampler!r} needs a model folder: pass --model PATH (or sampler.model)")
    model_dir = Path(model)
    if not (model_dir / "config.json").is_file():
        raise SamplerError(f"sampler {sampler!r}: {str(model_dir)!r} is not a model folder (no config.json)")
    return model_dir
