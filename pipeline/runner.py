"""The run: plan it, build each partition's pairs, merge the partitions, write the manifest last.

Three plain stages, so that ``build-pairs run`` (partitions one after another, in this process) and
the Prefect flow in ``flows/`` (partitions as tasks, on a Dask cluster or locally) run exactly the same
code and write the same tables:

- ``plan_run`` (``pipeline.plan``): scan the manifest once (sha256, line count, duplicate ids), check
  that the pair builder and sampler can be set up, open or resume the output folder. The ``RunPlan`` it
  returns is small and picklable: it is what a remote worker receives.
- ``build_partition`` (here): stream the lines of one partition (``rank::world_size`` by line index),
  turn each batch into pair and reject rows (``pipeline.batches``, in this process or a local pool),
  commit them in chunks; resumes after its last committed chunk.
- ``merge_run`` (``pipeline.merge``): rename the partitions' shards into ``shard-NNNNN.parquet``, write
  ``rejects.parquet`` and ``manifest.json`` (with per-stage counts and seconds in ``stats``).

``RunError`` means the run cannot go on at all; a bad line or a bad sample becomes a reject row.
"""

from __future__ import annotations

import os
import resource
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path

from pipeline.batches import (
    PartitionContext,
    RunError,
    batched,
    process_with_retries,
    shared_builder,
    shared_sampler,
    write_error,
)
from pipeline.config import PipelineConfig
from pipeline.manifest_reader import ManifestError, read_manifest
from pipeline.merge import RunSummary, merge_run
from pipeline.packing import PackedResults, pack_results
from pipeline.plan import PartitionResult, RunPlan, lock_partition, plan_run, release_run, result_fields
from pipeline.pool import WorkerDied, effective_workers, process_in_pool, tasks_of
from pipeline.process import one_line
from pipeline.run_state import OutputError
from pipeline.samplers import TransientSamplerError
from pipeline.writer import PartitionWriter

__all__ = ["PartitionResult", "RunError", "RunPlan", "RunSummary", "build_partition", "is_transient",
           "merge_run", "plan_run", "release_run", "run"]


TRANSIENT_OS_ERRORS = (InterruptedError, BlockingIOError, TimeoutError, ConnectionError)


def is_transient(exc: BaseException | None) -> bool:
    """Worth retrying: a sampler server that dropped out, interrupted or busy I/O. A full disk, a
    permission error or a bug is not: retrying would only fail again."""
    return isinstance(exc, (TransientSamplerError, *TRANSIENT_OS_ERRORS))


def peak_rss_mb() -> float:
    """This process's peak resident memory (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1 << 20) if sys.platform == "darwin" else rss / 1024, 1)


# -- stage 2: build one partition (its batches go through pipeline.batches) ------------------------
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
        raise write_error(plan.out_dir, e) from e
    if writer.done is not None:
        return PartitionResult(**result_fields(writer.done))
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
            yield task, pack_results([r for batch in task for r in process_with_retries(ctx, batch)])

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
        raise write_error(plan.out_dir, e) from e
    return PartitionResult(**result_fields(done))


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
