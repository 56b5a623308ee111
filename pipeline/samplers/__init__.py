"""Samplers by name. ``replay`` ships here; heavy backends are imported lazily when chosen.

Adding a backend: write ``factory(config: SamplerConfig) -> Sampler`` in its own module and register
it below as ``"module:attribute"`` (or call ``register_sampler`` from anywhere). Optional conventions
the runner honours: a ``base_dir`` attribute (set to the manifest's folder when None, for relative
image paths), an ``errors`` dict (sample_id -> why it got no responses), and ``provenance(sample_id,
seed)`` (stored in each pair's ``meta["sampler_provenance"]``).
"""

from pipeline.samplers.base import (
    Sampler,
    SamplerError,
    SamplerFactory,
    TransientSamplerError,
    get_sampler,
    register_sampler,
    sampler_names,
)
from pipeline.samplers.replay import ReplaySampler

register_sampler("replay", ReplaySampler)
register_sampler("transformers", "pipeline.samplers.transformers_sampler:TransformersSampler")
register_sampler("vllm", "pipeline.samplers.vllm_engine:VLLMSampler")
register_sampler("vllm-server", "pipeline.samplers.vllm_server:VLLMServerSampler")

__all__ = [
    "Sampler", "SamplerError", "SamplerFactory", "TransientSamplerError", "ReplaySampler", "get_sampler",
    "register_sampler", "sampler_names",
]
