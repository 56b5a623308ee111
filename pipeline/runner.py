"""The run: plan it, build each partition's pairs, merge the partitions, write the manifest last.

Three plain stages, so that ``build-pairs run`` (partitions one after another, in this process) and
the Prefect flow in ``flows/`` (partitions as tasks, on a Dask cluster or locally) run exactly the same
code and write the same tables:

- ``plan_run``: scan the manifest once (sha256, line count, duplicate ids), check that the pair
  builder and sampler can be set up, open or resume the output folder. The ``RunPlan`` it returns is
  small and picklable: it is what a remote worker receives.
- ``build_partition``: stream the lines of one partition (``rank::world_size`` by line index), turn
  each sample into pair and reject rows, commit them in chunks; resumes after its last committed chunk.
- ``merge_run``: rename the partitions' shards into ``shard-NNNNN.parquet``, write ``rejects.parquet``
  and ``manifest.json`` (with per-stage counts and seconds in ``stats``).

``RunError`` means the run cannot go on at all; a bad line or a bad sample becomes a reject row.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import socket
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from pipeline.config import PipelineConfig
from pipeline.dataset_card import CARD, write_card
from pipeline.lock import (
    LOCK_NAME,
    FileLock,
    LockError,
    LockHeld,
    acquire,
    check_free,
    held,
    hold,
    holder_info,
    release,
)
from pipeline.manifest_reader import ManifestError, ManifestItem, ManifestScan, read_manifest, scan_manifest
from pipeline.pool import WorkerDied, effective_workers, process_in_pool, tasks_of
from pipeline.process import PairBuilder, one_line
from pipeline.samplers import Sampler, SamplerError, TransientSamplerError, get_sampler
from pipeline.samplers.provenance import provenance_of
from pipeline.writer import (
    MANIFEST,
    STATE_DIR,
    OutputError,
    PackedResults,
    PartitionWriter,
    SampleResult,
    merge_partitions,
    open_run_state,
    pack_results,
    partition_dir,
    partition_done,
)
from schemas.pair import RejectRecord

__all__ = ["ManifestItem", "PartitionResult", "RunError", "RunPlan", "RunSummary", "batched", "build_partition",
           "is_transient", "lock_partition", "merge_run", "plan_run", "process_items", "read_manifest", "release_run",
           "run", "run_markdown",
           "scan_manifest"]

SAMPLER_RETRIES = 2  # extra attempts after a transient sampler failure (the flow adds Prefect's retries)
MAX_PARTITIONS = 4096


def pipeline_version() -> str:
    try:
        from importlib.metadata import version

        return version("medpref")
    except Exception:  # noqa: BLE001 - not installed (running from a checkout)
        return "0.1.0"


class RunError(RuntimeError):
    """The run cannot go on at all (bad manifest path, output not writable, ...); one-line message."""


class RunPlan(BaseModel):
    """Everything a partition needs, small enough to ship to a remote worker."""

    model_config = ConfigDict(frozen=True)

    samples_path: str
    out_dir: str
    config: PipelineConfig
    world_size: int = 1
    run_key: str = ""
    run_id: str = ""
    source_sha256: str = ""
    lines: int = 0
    items: int = 0
    duplicates: dict[int, int] = {}
    complete: bool = False
    resumed: bool = False  # this start continues one that had left state behind
    wait_for_lock: bool = False  # a partition held by another process: wait (True) or fail at once
    flow_run_id: str | None = None  # named in the lock files, so a refused writer says whose run it is
    scan_seconds: float = 0.0
    started_at: float = 0.0

    @property
    def config_hash(self) -> str:
        return self.config.content_hash()


class PartitionResult(BaseModel):
    """What one partition reports back (its ``done.json``)."""

    rank: int
    world_size: int
    counts: dict[str, int]
    stats: dict
    tokenizer: str | None = None
    wall_seconds: float = 0.0
    peak_rss_mb: float | None = None
    worker: str | None = None  # host:pid of the process that built it


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


# -- stage 1: plan ----------------------------------------------------------------------------------
def run_key_of(source_sha256: str, config: PipelineConfig, world_size: int) -> str:
    """Same manifest bytes, same content config, same shard layout and partition count: same key."""
    layout = json.dumps(config.output.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(f"{source_sha256}:{config.content_hash()}:{layout}:{world_size}".encode()).hexdigest()


def plan_run(samples_path: str | Path, out_dir: str | Path, config: PipelineConfig, resume: bool = False,
             partitions: int = 1, check_setup: bool = True, scan: ManifestScan | None = None, *,
             wait_for_lock: bool = False, flow_run_id: str | None = None) -> RunPlan:
    """Scan the manifest, check the set-up, open the output folder (in that order, so that a
    configuration that cannot work leaves no output state behind).

    ``check_setup``: build the pair builder and sampler here (cached, so in-process partitions reuse
    them); a flow whose partitions run elsewhere can skip the sampler by passing False. ``scan``: a
    ``scan_manifest`` result the caller already has.

    The output folder's writer lock is taken before anything is written and held by this process
    until ``release_run`` (or its death): another writer is refused at once, or waits with
    ``wait_for_lock``."""
    samples_path, out_dir = Path(samples_path), Path(out_dir)
    started = time.time()
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise RunError(f"partitions must be between 1 and {MAX_PARTITIONS}, got {partitions}")
    base = {"samples_path": str(samples_path), "out_dir": str(out_dir), "config": config,
            "world_size": partitions, "started_at": started, "wait_for_lock": wait_for_lock,
            "flow_run_id": flow_run_id}
    if resume and (out_dir / MANIFEST).exists():
        try:
            open_run_state(out_dir, "", partitions, resume=True)
        except OutputError as e:
            raise RunError(str(e)) from e
        return RunPlan(**base, complete=True, resumed=True)
    if not wait_for_lock and held(out_dir / STATE_DIR / LOCK_NAME) is None:
        try:  # refused in a second, before the scan: the lock is taken for real in open_run_state
            check_free(out_dir / STATE_DIR / LOCK_NAME, label=f"output folder {str(out_dir)!r}")
        except LockHeld as e:
            raise RunError(str(e)) from e
    try:
        scan = scan or scan_manifest(samples_path)
    except ManifestError as e:
        raise RunError(str(e)) from e
    run_key = run_key_of(scan.sha256, config, partitions)
    shared_builder(config, samples_path.parent)
    if check_setup:
        shared_sampler(config, samples_path.parent)
    try:
        state = open_run_state(out_dir, run_key, partitions, resume, wait_for_lock=wait_for_lock,
                               holder=holder_info("run", flow_run_id))
    except (OutputError, LockHeld, LockError) as e:
        raise RunError(str(e)) from e
    if state.complete:  # finished by the writer this one waited for
        return RunPlan(**base, complete=True, resumed=True)
    hold(state.lock)
    return RunPlan(**base, run_key=run_key, run_id=state.run_id, source_sha256=scan.sha256, lines=scan.lines,
                   items=scan.items, duplicates=scan.duplicates, resumed=state.resumed, scan_seconds=scan.seconds)


def release_run(plan: RunPlan) -> None:
    """Free the output folder's writer lock this process took in ``plan_run`` (a no-op elsewhere)."""
    release(Path(plan.out_dir) / STATE_DIR / LOCK_NAME)


def lock_partition(plan: RunPlan, rank: int) -> FileLock:
    """The partition's own writer lock: a partition task left running by a dead flow run (an orphan on a
    Dask worker) keeps it, so a rerun's task for the same partition waits for it or fails, never both
    writing."""
    path = partition_dir(Path(plan.out_dir), rank, plan.world_size) / LOCK_NAME
    label = f"partition {rank} of {plan.world_size} of {plan.out_dir!r}"
    while True:
        if (Path(plan.out_dir) / MANIFEST).exists():
            raise RunError(f"{label}: the run is already complete")
        try:
            lock = acquire(path, holder_info(f"partition {rank}", plan.flow_run_id), wait=plan.wait_for_lock,
                           label=label)
        except (LockHeld, LockError) as e:
            raise RunError(str(e)) from e
        if lock is not None:
            return lock


# -- stage 2: build one partition ---------------------------------------------------------------------
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


def _process_with_retries(ctx: PartitionContext, batch: list[ManifestItem]) -> list[SampleResult]:
    for attempt in range(SAMPLER_RETRIES + 1):
        try:
            return process_items(ctx, batch)
        except TransientSamplerError:
            if attempt == SAMPLER_RETRIES:
                raise  # the flow's retry condition sees it as transient; the CLI says "rerun with --resume"
            time.sleep(2.0 * (attempt + 1))
    raise AssertionError("unreachable")


TRANSIENT_OS_ERRORS = (InterruptedError, BlockingIOError, TimeoutError, ConnectionError)


def is_transient(exc: BaseException | None) -> bool:
    """Worth retrying: a sampler server that dropped out, interrupted or busy I/O. A full disk, a
    permission error or a bug is not: retrying would only fail again."""
    return isinstance(exc, (TransientSamplerError, *TRANSIENT_OS_ERRORS))


def _write_error(out_dir: str | Path, e: OSError) -> RunError:
    return RunError(f"cannot write to {str(out_dir)!r}: {e.strerror or e}")


def peak_rss_mb() -> float:
    """This process's peak resident memory (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1 << 20) if sys.platform == "darwin" else rss / 1024, 1)


def build_partition(plan: RunPlan, rank: int, progress: Callable[[int], None] | None = None,
                    workers: int = 1) -> PartitionResult:
    """Build the pairs of partition ``rank`` into its own folder; a finished partition returns at once.

    Resumes after the partition's last committed chunk, so a retried or re-run task neither loses
    nor repeats a row. ``progress`` gets the number of manifest lines handled per batch. ``workers`` > 1
    processes the batches in a local process pool (``pipeline.pool``); the rows written are the same."""
    if not 0 <= rank < plan.world_size:
        raise RunError(f"rank {rank} is outside 0..{plan.world_size - 1}")
    with lock_partition(plan, rank):
        return _build_partition(plan, rank, progress, workers)


def _build_partition(plan: RunPlan, rank: int, progress: Callable[[int], None] | None,
                     workers: int = 1) -> PartitionResult:
    start = time.perf_counter()
    cfg = plan.config
    try:
        writer = PartitionWriter(plan.out_dir, rank, plan.world_size, cfg.output.shard_size,
                                 max_shard_bytes=int(cfg.output.max_shard_mb * 1024 * 1024))
    except OutputError as e:
        raise RunError(str(e)) from e
    except OSError as e:
        raise _write_error(plan.out_dir, e) from e
    if writer.done is not None:
        return PartitionResult(**_result_fields(writer.done))
    manifest_dir = Path(plan.samples_path).parent
    builder = shared_builder(cfg, manifest_dir)
    ctx = PartitionContext(cfg, builder, shared_sampler(cfg, manifest_dir), Counter(), Counter())
    items = read_manifest(plan.samples_path, rank, plan.world_size, plan.duplicates, start_after=writer.last_line)
    parse_time: dict[int, float] = {}

    def read_batches() -> Iterator[list]:
        it = batched(items, cfg.sampler.batch_size)
        while True:
            t = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                return
            parse_time[id(batch)] = (time.perf_counter() - t) / len(batch)
            yield batch

    def in_process(tasks: Iterable[list[list]]) -> Iterator[tuple[list[list], PackedResults]]:
        for task in tasks:
            yield task, pack_results([r for batch in task for r in _process_with_retries(ctx, batch)])

    try:
        tasks = tasks_of(read_batches(), cfg.sampler.batch_size)
        stream = (process_in_pool(tasks, cfg, manifest_dir, workers) if workers > 1 and ctx.sampler is None
                  else in_process(tasks))
        for task, packed in stream:
            lines = iter(packed.lines)  # one per manifest item, batch after batch
            for batch in task:  # each line's own figures travel with its rows (exact after a resume)
                parse_seconds = parse_time.pop(id(batch), 0.0)
                for line in islice(lines, len(batch)):
                    line.seconds["parse"] += parse_seconds
                    line.items["parse"] += 1
            writer.add(packed)
            if progress is not None:
                progress(sum(len(batch) for batch in task))
        done = writer.close({"tokenizer": builder.tokenizer_name,
                             "wall_seconds": round(time.perf_counter() - start, 3),
                             "peak_rss_mb": peak_rss_mb(), "worker": f"{socket.gethostname()}:{os.getpid()}"})
    except ManifestError as e:
        raise RunError(str(e)) from e
    except OutputError as e:
        raise RunError(str(e)) from e
    except WorkerDied as e:
        raise RunError(str(e)) from e
    except TRANSIENT_OS_ERRORS:
        raise  # left as they are, so a retry policy recognises them
    except OSError as e:
        raise _write_error(plan.out_dir, e) from e
    return PartitionResult(**_result_fields(done))


def _result_fields(done: dict) -> dict:
    keys = set(PartitionResult.model_fields)
    return {k: v for k, v in done.items() if k in keys}


# -- stage 3: merge ------------------------------------------------------------------------------------
def run_stats(plan: RunPlan, results: list[PartitionResult], merge_seconds: float) -> dict:
    """``manifest.json`` ``stats``: per stage the items it handled and the seconds it took (summed over
    partitions), plus the wall time and each partition's own figures."""
    seconds, items = Counter(), Counter()
    for r in results:
        seconds.update(r.stats.get("seconds", {}))
        items.update(r.stats.get("items", {}))
    seconds["scan"] += plan.scan_seconds
    items["scan"] += plan.lines
    seconds["merge"] += merge_seconds
    items["merge"] += sum(r.counts.get("pairs", 0) for r in results)
    order = ["scan", "parse", "sample", "process", "image_load", "lesions", "text", "tokens", "image", "write",
             "summary", "merge"]
    names = sorted(set(seconds) | set(items), key=lambda k: (order.index(k) if k in order else len(order), k))
    wall = time.time() - plan.started_at
    pairs = sum(r.counts.get("pairs", 0) for r in results)
    return {
        "seconds": {k: round(seconds[k], 3) for k in names if k in seconds},
        "stages": {k: {"items": int(items.get(k, 0)), "seconds": round(seconds.get(k, 0.0), 3)} for k in names},
        "wall_seconds": round(wall, 3),
        "pairs_per_second": round(pairs / wall, 2) if wall > 0 else None,
        "resumed": plan.resumed,
        "partitions": [{"rank": r.rank, "samples": r.counts.get("samples", 0), "pairs": r.counts.get("pairs", 0),
                        "wall_seconds": r.wall_seconds, "peak_rss_mb": r.peak_rss_mb, "worker": r.worker}
                       for r in results],
    }


def merge_run(plan: RunPlan) -> RunSummary:
    """Merge the finished partitions into the output folder and write ``manifest.json`` last."""
    out = Path(plan.out_dir)
    if plan.complete or (out / MANIFEST).exists():
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        if not (out / CARD).exists():  # killed between manifest.json and the card: finish it
            _write_card(out, manifest)
        return summary_from_manifest(out, manifest)
    start = time.perf_counter()
    results = []
    for rank in range(plan.world_size):
        done = partition_done(out, rank, plan.world_size)
        if done is None:
            raise RunError(f"cannot merge {str(out)!r}: partition {rank} of {plan.world_size} is not finished; "
                           "rerun with --resume")
        results.append(PartitionResult(**_result_fields(done)))
    tokenizer = next((r.tokenizer for r in results if r.tokenizer), None) or plan.config.tokenizer
    extra = {
        "tokenizer": tokenizer,
        "config": plan.config.model_dump(mode="json"),
        "config_hash": plan.config_hash,
        "pipeline_version": pipeline_version(),
        "partitions": plan.world_size,
        "source": {"samples": plan.samples_path, "sha256": plan.source_sha256, "lines": plan.lines},
    }
    def fields() -> dict:  # asked just before manifest.json is written: the merge's own time counts
        return {**extra, "stats": run_stats(plan, results, time.perf_counter() - start)}

    try:
        manifest = merge_partitions(out, plan.world_size, fields)
    except OutputError as e:
        raise RunError(str(e)) from e
    except OSError as e:
        raise _write_error(out, e) from e
    _write_card(out, manifest)
    return summary_from_manifest(out, manifest)


def _write_card(out: Path, manifest: dict) -> None:
    """The dataset card (``pipeline.dataset_card``), after ``manifest.json``."""
    try:
        write_card(out, manifest)
    except OSError as e:
        raise _write_error(out, e) from e


def summary_from_manifest(out_dir: Path, manifest: dict) -> RunSummary:
    s = manifest.get("summary", {})
    return RunSummary(Path(out_dir), manifest["counts"], manifest["shards"], s.get("rejects_by_reason", {}),
                      s.get("error_types", {}), s.get("median_edit_ratio"),
                      manifest.get("stats", {}).get("seconds", {}))


def run_markdown(manifest: dict) -> str:
    """A short markdown summary of a finished run (the Prefect flow attaches it as an artifact)."""
    def cell(text) -> str:
        out = " ".join(str(text).split())
        for ch in "\\`*_{}[]<>()#+!|":
            out = out.replace(ch, "\\" + ch)
        return out

    c, s = manifest["counts"], manifest.get("stats") or {}
    summary = manifest.get("summary") or {}
    lines = ["## build-pairs run", "",
             f"{len(manifest['shards'])} shard(s), {manifest.get('partitions', 1)} partition(s), "
             f"config `{cell(manifest.get('config_hash', '?'))}`, manifest sha256 "
             f"`{cell((manifest.get('source') or {}).get('sha256', '?')[:16])}`", "",
             "| count | value |", "|---|---:|"]
    lines += [f"| {k} | {c[k]:,} |" for k in ("samples", "responses", "pairs", "rejects")]
    if s.get("stages"):
        lines += ["", "| stage | items | seconds |", "|---|---:|---:|"]
        lines += [f"| {cell(k)} | {v['items']:,} | {v['seconds']:.2f} |" for k, v in s["stages"].items()]
    if s.get("wall_seconds") is not None:
        lines += ["", f"Wall time {s['wall_seconds']:.1f} s, {s.get('pairs_per_second') or 0:.1f} pairs/s"
                      + (" (resumed)" if s.get("resumed") else "") + "."]
    for title, key in (("reject reason", "rejects_by_reason"), ("error type", "error_types")):
        if summary.get(key):
            lines += ["", f"| {title} | count |", "|---|---:|"]
            lines += [f"| {cell(k)} | {v:,} |" for k, v in summary[key].items()]
    return "\n".join(lines) + "\n"


# -- the whole run, in this process -----------------------------------------------------------------
def run(samples_path: str | Path, out_dir: str | Path, config: PipelineConfig, resume: bool = False,
        progress: bool | None = None, partitions: int = 1, workers: int | None = 1,
        wait_for_lock: bool = False) -> RunSummary:
    """Build the pairs of one manifest into ``out_dir``, partitions one after another, each over
    ``workers`` local processes (None: the machine's cores; the output does not depend on it).
    ``progress``: None shows a bar on a terminal. Raises ``RunError`` when it cannot run at all, or
    when another process is writing ``out_dir`` (unless ``wait_for_lock``)."""
    from tqdm import tqdm

    try:
        workers = effective_workers(config, workers)
    except ValueError as e:
        raise RunError(str(e)) from e
    plan = plan_run(samples_path, out_dir, config, resume, partitions, wait_for_lock=wait_for_lock)
    try:
        if plan.complete:
            return merge_run(plan)
        disable = None if progress is None else not progress
        with tqdm(total=plan.items, unit="line", desc="build-pairs", disable=disable, file=sys.stderr) as bar:
            for rank in range(plan.world_size):
                try:
                    build_partition(plan, rank, progress=bar.update, workers=workers)
                except TransientSamplerError as e:
                    raise RunError(f"sampler kept failing ({one_line(e)}); rerun with --resume") from e
        return merge_run(plan)
    finally:
        release_run(plan)
