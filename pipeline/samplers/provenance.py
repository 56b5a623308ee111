"""Where a sampled response came from, recorded in each pair's ``meta``.

A preference pair is only reusable when one can tell which policy produced its on-policy side: the
model folder alone is not enough (a folder is overwritten by the next checkpoint), so the config and
the weights index are hashed; the prompt template is hashed too, because the same model answers a
different question when the chat template or default prompt changes.

Samplers expose ``provenance(sample_id, seed) -> dict`` (see ``SamplerProvenance``); the pair builder
stores that dict under ``meta["sampler_provenance"]``.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

# Weight files smaller than this are hashed in full (tiny test models differ only in their values);
# larger ones by their safetensors header (tensor names, shapes, dtypes, offsets) and size, which is
# what a weights index records, so a 15 GB checkpoint is fingerprinted in milliseconds.
FULL_HASH_LIMIT = 64 * 1024 * 1024
_SEED_MODULUS = 2**31 - 1  # every backend (torch, vLLM, the OpenAI API) accepts seeds below 2**31


def derive_seed(seed: int, sample_id: str, index: int | None = None) -> int:
    """The seed of one sample (or of its ``index``-th response): a pure function of the run seed and the
    sample id, so batching, ordering and ``--resume`` never change what a sample gets."""
    key = f"{seed}:{sample_id}" if index is None else f"{seed}:{sample_id}:{index}"
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:16], 16) % _SEED_MODULUS


def sha256_text(text: str | None) -> str:
    return hashlib.sha256((text or "").encode("utf-8")).hexdigest()[:16]


def _safetensors_header(path: Path) -> bytes:
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return b""
        (length,) = struct.unpack("<Q", head)
        return f.read(min(length, 100 * 1024 * 1024))


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_fingerprint(model_dir: str | Path) -> dict[str, Any]:
    """``{"path", "config_sha256", "weights_sha256"}`` of a local model folder (hashes are 16 hex digits).

    ``weights_sha256`` covers the weights index when there is one (``*.index.json``) and, per weight
    file, its name, size and header (its full bytes when under ``FULL_HASH_LIMIT``). A name that is not
    a local folder (a served model) gets ``None`` hashes.
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        return {"path": str(model_dir), "config_sha256": None, "weights_sha256": None}
    config = folder / "config.json"
    config_hash = hashlib.sha256(config.read_bytes()).hexdigest()[:16] if config.is_file() else None
    h = hashlib.sha256()
    for index in sorted(folder.glob("*.index.json")):
        h.update(index.name.encode() + b"\0" + index.read_bytes())
    weights = sorted([*folder.glob("*.safetensors"), *folder.glob("*.bin"), *folder.glob("*.pt")])
    for w in weights:
        size = w.stat().st_size
        h.update(f"{w.name}\0{size}\0".encode())
        if size <= FULL_HASH_LIMIT:
            h.update(_file_digest(w).encode())
        elif w.suffix == ".safetensors":
            h.update(_safetensors_header(w))
    weights_hash = h.hexdigest()[:16] if weights else None
    return {"path": str(folder.resolve()), "config_sha256": config_hash, "weights_sha256": weights_hash}


@dataclass(frozen=True)
class SamplerProvenance:
    """What a sampler records for every response it produced (the per-sample part is added by ``for_sample``)."""

    sampler: str
    backend: str  # e.g. "transformers 5.24.0", "vllm 0.32.0", "openai-http"
    model: dict[str, Any]  # model_fingerprint(...) or {"name": served name, "server": url}
    sampling: dict[str, Any]  # n, temperature, top_p, max_new_tokens, stop
    prompt_template_sha256: str
    extra: dict[str, Any] = field(default_factory=dict)  # parallelism, dtype, ...

    def for_sample(self, sample_id: str, seed: int) -> dict[str, Any]:
        out = asdict(self)
        out["seed"] = seed
        out["sample_seed"] = derive_seed(seed, sample_id)
        return json.loads(json.dumps(out, default=str))  # plain JSON types only


@runtime_checkable
class ProvenanceSource(Protocol):
    """Optional addition to the ``Sampler`` protocol: samplers that know where their responses came from."""

    def provenance(self, sample_id: str, seed: int) -> dict[str, Any]: ...


def provenance_of(sampler: object, sample_id: str, seed: int) -> dict[str, Any] | None:
    """The sampler's provenance for one sample, or ``None`` for samplers that record none (replay)."""
    if isinstance(sampler, ProvenanceSource):
        return sampler.provenance(sample_id, seed)
    return None
