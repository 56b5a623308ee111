"""The run: stream the manifest, sample where needed, build pairs, write shards, write the manifest last.

The stages are plain functions (``read_manifest``, ``prepare_run``, ``process_items``,
``write_results``, ``finalize_run``) so the Prefect flow in ``flows/`` wraps exactly these and gives
the same tables. ``run`` raises ``RunError`` only when it cannot run at all; a bad line or a bad
sample becomes a reject row and the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.process import PairBuilder, one_line
from pipeline.samplers import Sampler, SamplerError, TransientSamplerError, get_sampler
from pipeline.samplers.provenance import provenance_of
from pipeline.writer import MANIFEST, OutputError, SampleResult, ShardWriter
from schemas.pair import RejectRecord
from schemas.sample import Sample, SampleError, parse_sample

SAMPLER_RETRIES = 2  # extra attempts after a transient sampler failure (the flow uses Prefect's retries)


def pipeline_version() -> str:
    try:
        from importlib.metadata import version

        return version("medpref")
    except Exception:  # noqa: BLE001 - not installed (running from a checkout)
        return "0.1.0"


class RunError(RuntimeError):
    """The run cannot go on at all (bad manifest path, output not writable, ...); one-line message."""


@dataclass
class ManifestItem:
    """One non-blank manifest line: a parsed sample, or the reject row saying why it is not one.

    ``key`` is unique per item (``id:<sample_id>`` or ``line:<n>``) and is what ``--resume`` skips.
    """

    line_no: int
    key: str
    sample: Sample | None = None
    reject: RejectRecord | None = None


@dataclass
class RunContext:
    """What the stages share during one run."""

    samples_path: Path
    out_dir: Path
    config: PipelineConfig
    writer: ShardWriter
    builder: PairBuilder | None
    sampler: Sampler | None = None
    seconds: Counter = field(default_factory=Counter)
    source_sha256: str = ""
    started: float = field(default_factory=time.perf_counter)


@dataclass
class RunSummary:
    out_dir: Path
    counts: dict
    shards: list[str]
    rejects_by_reason: dict
    error_types: dict
    median_edit_ratio: float | None
    seconds: dict

    def format(self) -> str:
        c = self.counts
        lines = [f"wrote {c['pairs']} pairs in {len(self.shards)} shard(s) to {self.out_dir} "
                 f"({c['samples']} samples, {c['responses']} responses, {c['rejects']} rejects)"]
        if self.rejects_by_reason:
            lines.append("rejects: " + ", ".join(f"{k}={v}" for k, v in self.rejects_by_reason.items()))
        if self.error_types:
            lines.append("error types: " + ", ".join(f"{k}={v}" for k, v in self.error_types.items()))
        if self.median_edit_ratio is not None:
            lines.append(f"median edit ratio: {self.median_edit_ratio:.3f}")
        return "\n".join(lines)


# -- stage: read and parse ------------------------------------------------------------------------
def _open_manifest(path: Path):
    try:
        return open(path, "rb")
    except OSError as e:
        raise RunError(f"cannot read manifest {str(path)!r}: {e.strerror or e}") from e


def read_manifest(path: str | Path) -> Iterator[ManifestItem]:
    """Stream the manifest line by line; bad lines and duplicate ids become reject items."""
    path = Path(path)
    seen: set[str] = set()
    with _open_manifest(path) as f:
        for line_no, raw in enumerate(f, 1):
            if line_no == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark is not part of the JSON
            if not raw.strip():
                continue
            try:
                sample = parse_sample(raw.rstrip(b"\r\n"), line_no)
            except SampleError as e:
                detail = f"line {line_no}: field {e.field!r}: {e.detail}"
                yield ManifestItem(line_no, f"line:{line_no}",
                                   reject=RejectRecord(e.sample_id, "parse", e.reason, detail, -1))
                continue
            if sample.sample_id in seen:
                detail = f"line {line_no}: field 'sample_id': duplicate of an earlier line's id {sample.sample_id!r}"
                yield ManifestItem(line_no, f"line:{line_no}",
                                   reject=RejectRecord(sample.sample_id, "parse", "duplicate_sample_id", detail, -1))
                continue
            seen.add(sample.sample_id)
            yield ManifestItem(line_no, f"id:{sample.sample_id}", sample=sample)


def _file_digest(path: Path) -> tuple[str, int]:
    """sha256 and line count of the manifest (the resume key and the progress bar's total)."""
    h = hashlib.sha256()
    lines = 0
    with _open_manifest(path) as f:
        try:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
                lines += block.count(b"\n")
        except OSError as e:
            raise RunError(f"cannot read manifest {str(path)!r}: {e.strerror or e}") from e
    return h.hexdigest(), lines


# -- stage: prepare ------------------------------------------------------------------------------
def open_writer(out_dir: Path, config: PipelineConfig, run_key: str, resume: bool) -> ShardWriter:
    try:
        return ShardWriter(out_dir, config.output.shard_size, run_key=run_key, resume=resume,
                           max_shard_bytes=int(config.output.max_shard_mb * 1024 * 1024))
    except OutputError as e:
        raise RunError(str(e)) from e


def prepare_run(samples_path: str | Path, out_dir: str | Path, config: PipelineConfig,
                resume: bool = False) -> RunContext:
    """Check the manifest, build the pair builder and sampler, open the output (in that order, so
    a configuration that cannot work leaves no output state behind)."""
    samples_path, out_dir = Path(samples_path), Path(out_dir)
    if samples_path.is_dir():
        raise RunError(f"cannot read manifest {str(samples_path)!r}: it is a folder")
    digest, _ = _file_digest(samples_path)
    layout = json.dumps(config.output.model_dump(mode="json"), sort_keys=True)
    run_key = hashlib.sha256(f"{digest}:{config.content_hash()}:{layout}".encode()).hexdigest()
    if resume and (out_dir / MANIFEST).exists():
        writer = open_writer(out_dir, config, run_key, resume=True)
        return RunContext(samples_path, out_dir, config, writer, None, source_sha256=digest)
    try:
        builder = PairBuilder(config, samples_path.parent)
    except Exception as e:  # noqa: BLE001 - a tokenizer or editor that cannot load: cannot run
        raise RunError(f"cannot set up the pair builder: {one_line(e)}") from e
    sampler = None
    if config.sampler.name != "replay":
        try:
            sampler = get_sampler(config.sampler)
        except Exception as e:  # noqa: BLE001
            raise RunError(f"cannot set up sampler {config.sampler.name!r}: {one_line(e)}") from e
        if getattr(sampler, "base_dir", "unset") is None:
            sampler.base_dir = samples_path.parent  # relative image paths are relative to the manifest
    writer = open_writer(out_dir, config, run_key, resume=resume)
    return RunContext(samples_path, out_dir, config, writer, builder, sampler, source_sha256=digest)


# -- stage: sample and process ---------------------------------------------------------------------
def sample_responses(ctx: RunContext, samples: list[Sample]) -> list[list[str]]:
    """Responses for samples that have none, from the configured sampler (one call per batch)."""
    if ctx.sampler is None:
        return [[] for _ in samples]
    start = time.perf_counter()
    try:
        out = ctx.sampler.sample(samples, ctx.config.sampler.num_samples, ctx.config.sampler_seed)
    finally:
        ctx.seconds["sample"] += time.perf_counter() - start
    if len(out) != len(samples):
        raise SamplerError(f"sampler returned {len(out)} response lists for {len(samples)} samples")
    return [list(r) for r in out]


def process_items(ctx: RunContext, items: list[ManifestItem]) -> list[SampleResult]:
    """Turn a batch of manifest items into results (skipping those a resumed run already wrote).

    Raises ``TransientSamplerError`` (worth retrying: nothing was written); any other failure of one
    sample is a reject row.
    """
    todo = [it for it in items if it.key not in ctx.writer.completed]
    to_sample = [it.sample for it in todo if it.sample is not None and it.sample.responses is None]
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
    results = []
    for it in todo:
        if it.reject is not None:
            results.append(SampleResult(it.key, rejects=[it.reject]))
            continue
        sample = it.sample
        was_sampled = sample.responses is None and ctx.sampler is not None
        if sample.responses is None and sample_failure is not None:
            rej = RejectRecord(sample.sample_id, "sample", "sampler_error", sample_failure, -1)
            results.append(SampleResult(it.key, rejects=[rej]))
            continue
        provenance = None
        if sample.responses is None:
            responses = sampled.get(sample.sample_id, [])
            why = (getattr(ctx.sampler, "errors", None) or {}).get(sample.sample_id)
            if not responses and why:
                rej = RejectRecord(sample.sample_id, "sample", "no_responses", f"sampler: {why}", -1)
                results.append(SampleResult(it.key, rejects=[rej]))
                continue
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
        ctx.seconds["process"] += time.perf_counter() - start
        results.append(SampleResult(it.key, pairs, rejects, responses=len(sample.responses or [])))
    return results


# -- stage: write and finalize -------------------------------------------------------------------
def write_results(ctx: RunContext, results: Iterable[SampleResult]) -> None:
    start = time.perf_counter()
    try:
        for r in results:
            ctx.writer.add(r)
    except OSError as e:
        raise RunError(f"cannot write to {str(ctx.out_dir)!r}: {e.strerror or e}") from e
    finally:
        ctx.seconds["write"] += time.perf_counter() - start


def finalize_run(ctx: RunContext) -> RunSummary:
    """Write ``rejects.parquet`` and then ``manifest.json`` (the completion mark)."""
    if ctx.writer.complete:
        return summary_from_manifest(ctx.out_dir, ctx.writer.finalize({}))
    try:
        start = time.perf_counter()
        ctx.writer.flush()  # the last shard, timed with the others
        ctx.seconds["write"] += time.perf_counter() - start
    except OSError as e:
        raise RunError(f"cannot write to {str(ctx.out_dir)!r}: {e.strerror or e}") from e
    seconds = dict(ctx.seconds)
    wall = time.perf_counter() - ctx.started
    pairs = ctx.writer.counts()["pairs"]
    if ctx.builder is not None:
        seconds.update({f"process.{k}": v for k, v in ctx.builder.seconds.items()})
    extra = {
        "tokenizer": ctx.builder.tokenizer_name if ctx.builder is not None else ctx.config.tokenizer,
        "config": ctx.config.model_dump(mode="json"),
        "config_hash": ctx.config.content_hash(),
        "pipeline_version": pipeline_version(),
        "source": {"samples": str(ctx.samples_path), "sha256": ctx.source_sha256},
        "stats": {"seconds": {k: round(v, 3) for k, v in sorted(seconds.items())},
                  "wall_seconds": round(wall, 3),
                  "pairs_per_second": round(pairs / wall, 2) if wall > 0 else None},
    }
    try:
        manifest = ctx.writer.finalize(extra)
    except OSError as e:
        raise RunError(f"cannot write to {str(ctx.out_dir)!r}: {e.strerror or e}") from e
    return summary_from_manifest(ctx.out_dir, manifest)


def summary_from_manifest(out_dir: Path, manifest: dict) -> RunSummary:
    s = manifest.get("summary", {})
    return RunSummary(Path(out_dir), manifest["counts"], manifest["shards"], s.get("rejects_by_reason", {}),
                      s.get("error_types", {}), s.get("median_edit_ratio"),
                      manifest.get("stats", {}).get("seconds", {}))


def batched(items: Iterable, n: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(islice(it, n)):
        yield batch


def _process_with_retries(ctx: RunContext, batch: list[ManifestItem]) -> list[SampleResult]:
    for attempt in range(SAMPLER_RETRIES + 1):
        try:
            return process_items(ctx, batch)
        except TransientSamplerError as e:
            if attempt == SAMPLER_RETRIES:
                raise RunError(f"sampler kept failing ({one_line(e)}); rerun with --resume") from e
            time.sleep(2.0 * (attempt + 1))
    raise AssertionError("unreachable")


def run(samples_path: str | Path, out_dir: str | Path, config: PipelineConfig, resume: bool = False,
        progress: bool | None = None) -> RunSummary:
    """Build the pairs of one manifest into ``out_dir``. ``progress``: None shows a bar on a terminal."""
    from tqdm import tqdm

    ctx = prepare_run(samples_path, out_dir, config, resume)
    if ctx.writer.complete:
        return finalize_run(ctx)
    _, total = _file_digest(ctx.samples_path)
    disable = None if progress is None else not progress
    with tqdm(total=total, unit="line", desc="build-pairs", disable=disable, file=sys.stderr) as bar:
        start = time.perf_counter()
        for batch in batched(read_manifest(ctx.samples_path), config.sampler.batch_size):
            ctx.seconds["parse"] += time.perf_counter() - start
            write_results(ctx, _process_with_retries(ctx, batch))
            bar.update(batch[-1].line_no - bar.n)
            start = time.perf_counter()
    return finalize_run(ctx)
