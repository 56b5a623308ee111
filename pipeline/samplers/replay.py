"""The default sampler: replays the responses already in the manifest (offline, no model)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.samplers.base import SamplerConfig
    from schemas.sample import Sample


class ReplaySampler:
    """Returns each sample's manifest responses; a sample without any gets an empty list.

    ``n`` is ignored: replay never invents responses, and the runner rejects a sample with none.
    """

    name = "replay"

    def __init__(self, config: SamplerConfig | None = None):
        self.model = config.model if config is not None else None

    def sample(self, samples: list[Sample], n: int, seed: int) -> list[list[str]]:
        return [list(s.responses or []) for s in samples]
