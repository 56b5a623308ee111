"""The sampler protocol: what the runner and the ``llm`` editor call (implementations and their registry
are in ``pipeline.samplers``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from schemas.sample import Sample


@runtime_checkable
class Sampler(Protocol):
    """Generates ``n`` responses per sample.

    ``seed`` is the run seed: implementations derive each sample's seed from ``(seed, sample_id)``
    so that batching and ``--resume`` never change what a sample gets.
    """

    name: str

    def sample(self, samples: list[Sample], n: int, seed: int) -> list[list[str]]: ...
