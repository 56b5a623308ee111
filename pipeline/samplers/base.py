"""The sampler extension point: a registry by name, and the ``sampler`` config section it is built from.

The ``Sampler`` protocol itself is ``schemas.sampler`` (the ``llm`` editor calls it too).

A sampler turns samples without responses into on-policy responses. Backends that need heavy
packages (transformers, vLLM) are registered as ``"module:attribute"`` strings and imported only when
chosen, so the CPU replay path never imports them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.sampler import Sampler


class SamplerError(RuntimeError):
    """A sampler that cannot be built or run; the message is one line."""


class TransientSamplerError(SamplerError):
    """A failure worth retrying (a server that timed out or dropped the connection)."""


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


class SamplerConfig(BaseModel):
    """Where responses come from when the manifest has none (replayed responses always win): the
    ``sampler`` section of the run config (``pipeline.config``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = "replay"
    model: str | None = None
    num_samples: int = Field(1, ge=1)
    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(256, ge=1)
    seed: int | None = None  # None: the top-level seed
    server_url: str | None = None
    concurrency: int = Field(8, ge=1)
    batch_size: int = Field(8, ge=1)  # samples handed to the sampler at once
    stop: list[str] = Field(default_factory=list)  # stop strings
    tensor_parallel_size: int = Field(1, ge=1)  # vllm: GPUs per model replica
    pipeline_parallel_size: int = Field(1, ge=1)  # vllm
    data_parallel_size: int = Field(1, ge=1)  # vllm: replicas (the offline engine wants 1; use vllm-server)
    engine_args: dict[str, Any] = Field(default_factory=dict)  # vllm: passed to vllm.LLM verbatim

    @field_validator("name")
    @classmethod
    def _known_sampler(cls, v: str) -> str:
        names = sampler_names()
        if v not in names:
            raise ValueError(f"unknown sampler {v!r}; valid samplers: {', '.join(names)}")
        return v
