"""One batch of manifest items through the stages, in whichever process runs it: ``build-pairs run``'s
own (``pipeline.runner``) or a worker of the local pool (``pipeline.pool``).

The pair builder and the sampler are heavy (a tokenizer, an extractor, maybe a model): each process
builds them once and reuses them (``shared_builder``, ``shared_sampler``). ``process_items`` turns a
batch into one ``SampleResult`` per item, in order; a transient sampler failure is retried
(``SAMPLER_RETRIES``), any other failure of one sample is a reject row.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.manifest_reader import ManifestItem
from pipeline.packing import SampleResult
from pipeline.process import PairBuilder, one_line
from pipeline.samplers import Sampler, SamplerError, TransientSamplerError, get_sampler
from pipeline.samplers.provenance import provenance_of
from schemas.pair import RejectRecord

SAMPLER_RETRIES = 2  # extra attempts after a transient sampler failure (the flow adds Prefect's retries)


class RunError(RuntimeError):
    """The run cannot go on at all (bad manifest path, output not writable, ...); one-line message."""


def write_error(out_dir: str | Path, e: OSError) -> RunError:
    return RunError(f"cannot write to {str(out_dir)!r}: {e.strerror or e}")


# -- shared heavy objects --------------------------------------------------------------------------
# A pair builder loads a tokenizer and an extractor (seconds), a sampler maybe a model: built once per
# process (per thread: neither is thread-safe) and reused by every partition that process runs.
_LOCAL = threading.local()
_CACHE_SIZE = 2


def _cached(kind: str, key: str, make: Callable[[], object]) -> object:
    cache: OrderedDict = _LOCAL.__dict__.setdefault(kind, OrderedDict())
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = make()
    cache[key] = value
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)
    return value


def shared_builder(config: PipelineConfig, manifest_dir: Path) -> PairBuilder:
    key = f"{config.content_hash()}:{Path(manifest_dir).resolve()}"
    try:
        return _cached("builders", key, lambda: PairBuilder(config, manifest_dir))  # type: ignore[return-value]
    except Exception as e:  # noqa: BLE001 - a tokenizer or editor that cannot load: cannot run
        raise RunError(f"cannot set up the pair builder: {one_line(e)}") from e


def shared_sampler(config: PipelineConfig, manifest_dir: Path) -> Sampler | None:
    if config.sampler.name == "replay":
        return None
    key = json.dumps([config.sampler.model_dump(mode="json"), str(Path(manifest_dir).resolve())], sort_keys=True)

    def make():
        sampler = get_sampler(config.sampler)
        if getattr(sampler, "base_dir", "unset") is None:
            sampler.base_dir = Path(manifest_dir)  # relative image paths are relative to the manifest
        return sampler

    try:
        return _cached("samplers", key, make)  # type: ignore[return-value]
    except Exception as e:  # noqa: BLE001
        raise RunError(f"cannot set up sampler {config.sampler.name!r}: {one_line(e)}") from e


# -- one batch ---------------------------------------------------------------------------------------
@dataclass
class PartitionContext:
    """What processing one partition shares."""

    config: PipelineConfig
    builder: PairBuilder
    sampler: Sampler | None
    seconds: Counter
    items: Counter


def sample_responses(ctx: PartitionContext, samples: list) -> list[list[str]]:
    """Responses for samples that have none, from the configured sampler (one call per batch)."""
    if ctx.sampler is None:
        return [[] for _ in samples]
    start = time.perf_counter()
    try:
        out = ctx.sampler.sample(samples, ctx.config.sampler.num_samples, ctx.config.sampler_seed)
    finally:
        ctx.seconds["sample"] += time.perf_counter() - start
        ctx.items["sample"] += len(samples)
    if len(out) != len(samples):
        raise SamplerError(f"sampler returned {len(out)} response lists for {len(samples)} samples")
    return [list(r) for r in out]


def process_items(ctx: PartitionContext, items: list[ManifestItem]) -> list[SampleResult]:
    """Turn a batch of manifest items into results, one per item, in order.

    Each result carries the stage seconds and counts spent on it (``SampleResult.seconds``/``items``),
    so the writer commits exactly the figures of the rows it commits and a resumed run's stage counts
    add up to an uninterrupted one's. Raises ``TransientSamplerError`` (worth retrying: nothing was
    written); any other failure of one sample is a reject row."""
    to_sample = [it.sample for it in items if it.sample is not None and it.sample.responses is None]
    sampled: dict[str, list[str]] = {}
    sample_failure: str | None = None
    if to_sample:
        try:
            for s, responses in zip(to_sample, sample_responses(ctx, to_sample), strict=True):
                sampled[s.sample_id] = responses
        except TransientSamplerError:
            raise
        except Exception as e:  # noqa: BLE001
            sample_failure = one_line(e)
    sample_seconds, n_sampled = ctx.seconds.pop("sample", 0.0), ctx.items.pop("sample", 0)
    results = []
    for it in items:
        before_s, before_n = Counter(ctx.builder.seconds), Counter(ctx.builder.counts)
        result = _process_one(ctx, it, sampled, sample_failure)
        result.seconds.update(Counter(ctx.builder.seconds) - before_s)
        result.items.update(Counter(ctx.builder.counts) - before_n)
        if n_sampled and it.sample is not None and it.sample.responses is None:
            result.seconds["sample"] += sample_seconds / n_sampled
            result.items["sample"] += 1
        results.append(result)
    return results


def _process_one(ctx: PartitionContext, it: ManifestItem, sampled: dict[str, list[str]],
                 sample_failure: str | None) -> SampleResult:
    if it.reject is not None:
        return SampleResult(it.line_no, rejects=[it.reject], samples=1)
    sample = it.sample
    was_sampled = sample.responses is None and ctx.sampler is not None
    if sample.responses is None and sample_failure is not None:
        rej = RejectRecord(sample.sample_id, "sample", "sampler_error", sample_failure, -1)
        return SampleResult(it.line_no, rejects=[rej])
    provenance = None
    if sample.responses is None:
        responses = sampled.get(sample.sample_id, [])
        why = (getattr(ctx.sampler, "errors", None) or {}).get(sample.sample_id)
        if not responses and why:
            rej = RejectRecord(sample.sample_id, "sample", "no_responses", f"sampler: {why}", -1)
            return SampleResult(it.line_no, rejects=[rej])
        sample = sample.model_copy(update={"responses": responses})
        provenance = provenance_of(ctx.sampler, sample.sample_id, ctx.config.sampler_seed)
    start = time.perf_counter()
    try:
        pairs, rejects = ctx.builder.process(sample, sampled=was_sampled, provenance=provenance)
    except Exception as e:  # noqa: BLE001 - last line of defence: one sample never stops the run
        rejects = [RejectRecord(sample.sample_id, "process", "internal_error", one_line(e), i)
                   for i in range(len(sample.responses or []))] or [
            RejectRecord(sample.sample_id, "process", "internal_error", one_line(e), -1)]
        pairs = []
    result = SampleResult(it.line_no, pairs, rejects, responses=len(sample.responses or []))
    result.seconds["process"] += time.perf_counter() - start
    result.items["process"] += 1
    return result


def batched(items: Iterable, n: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(islice(it, n)):
        yield batch


def process_with_retries(ctx: PartitionContext, batch: list[ManifestItem]) -> list[SampleResult]:
    for attempt in range(SAMPLER_RETRIES + 1):
        try:
            return process_items(ctx, batch)
        except TransientSamplerError:
            if attempt == SAMPLER_RETRIES:
                raise  # the flow's retry condition sees it as transient; the CLI says "rerun with --resume"
            time.sleep(2.0 * (attempt + 1))
    raise AssertionError("unreachable")
