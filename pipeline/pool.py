"""All cores of one machine: a partition's batches processed in a local pool of worker processes.

Why this shape: the output must be the same, byte for byte, whatever the number of workers. So the
partition layout, the reading of the manifest and the writer stay in the run's own process, exactly
as with one worker; ``process_items`` (the NLP, the edits, the images: nearly all the time) runs in
the workers, and so does ``pack_results``: a worker sends back each task's pair rows as one Arrow
record batch (an IPC stream, not Python objects) with the lines' figures, so the run's process, which
shares the cores with the workers, only slices those batches into chunks and writes the shards. The
results come back *in manifest order*, so the writer sees the very same sequence of rows and closes
the same chunks. A task is ``TASK_LINES`` manifest lines (whole sampler batches; one process packs
the same groups): few enough tasks that their overhead does not count, small enough that the last
ones do not leave a core idle. At most
``2 x workers`` tasks are in flight, so memory stays bounded on a manifest of any size. Dask and the
Prefect flow remain the way past one machine.

Each worker builds (or, forked, inherits) its own ``PairBuilder`` once, in its initializer. The run's
objects are frozen out of the garbage collector before the fork (``gc.freeze``), so a worker's
collections neither walk nor copy the tokenizer, lexicon and models it inherited. A sampler other than
``replay`` loads a model or holds a connection, so its runs keep one process (``effective_workers``).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from pathlib import Path

from pipeline.batches import PartitionContext, process_with_retries, shared_builder
from pipeline.config import PipelineConfig
from pipeline.manifest_reader import ManifestItem
from pipeline.packing import PackedResults, pack_results

TASK_LINES = 32  # manifest lines per pool task (rounded up to whole sampler batches)


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity on Linux), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def effective_workers(config: PipelineConfig, workers: int | None) -> int:
    """``workers`` (None: the machine's cores), or 1 when the sampler cannot be shared across processes."""
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    n = machine_cores() if workers is None else workers
    return n if config.sampler.name == "replay" else 1


# -- in the worker processes ------------------------------------------------------------------------
_STATE: dict = {}


PARENT_POLL_SECONDS = 0.2


def _exit_with_parent(parent: int) -> None:
    """A worker whose run process was killed (SIGKILL, OOM) exits too, instead of lingering as an orphan
    that holds the run's stdout and stderr open (its siblings keep the task pipe open, so it never sees EOF)."""
    while True:
        time.sleep(PARENT_POLL_SECONDS)
        if os.getppid() != parent:
            os._exit(1)


def _init(config: PipelineConfig, manifest_dir: str, parent: int) -> None:
    _STATE["config"], _STATE["manifest_dir"] = config, Path(manifest_dir)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="medpref-parent-watch").start()
    shared_builder(config, Path(manifest_dir))  # forked: the parent's; spawned: loaded once, here


def _work(task: list[list[ManifestItem]]) -> PackedResults:
    cfg = _STATE["config"]
    ctx = PartitionContext(cfg, shared_builder(cfg, _STATE["manifest_dir"]), None, Counter(), Counter())
    return pack_results([r for batch in task for r in process_with_retries(ctx, batch)])


def _context():
    """fork where there is one (the parent's loaded tokenizer and lexicon come for free), else spawn."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


# -- in the run's process ---------------------------------------------------------------------------
class WorkerDied(RuntimeError):
    """A worker process was killed (out of memory, a signal); nothing it held was written."""


def tasks_of(batches: Iterable[list[ManifestItem]], batch_size: int) -> Iterator[list[list[ManifestItem]]]:
    """Consecutive sampler batches grouped into tasks of about ``TASK_LINES`` lines; their results are
    packed together (one Arrow batch), in a pool worker or in the run's own process alike."""
    per_task = max(1, -(-TASK_LINES // batch_size))
    it = iter(batches)
    while task := list(islice(it, per_task)):
        yield task


def process_in_pool(tasks: Iterable[list[list[ManifestItem]]], config: PipelineConfig, manifest_dir: Path,
                    workers: int) -> Iterator[tuple[list[list[ManifestItem]], PackedResults]]:
    """(task, its packed results) for every task (``tasks_of``), in the order of ``tasks``. A batch whose
    sampler kept failing raises ``TransientSamplerError`` here, as it would in one process."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one Rust thread pool per worker is plenty
    pack_results([])  # pyarrow imports pandas on its first conversion: here, once, not in every worker
    gc.freeze()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=_init,
                               initargs=(config, str(manifest_dir), os.getpid()))
    pending: deque[tuple[list[list[ManifestItem]], Future]] = deque()
    try:
        it = iter(tasks)
        exhausted = False
        while pending or not exhausted:
            try:  # a dead worker breaks the pool: the next submit or result says so
                while not exhausted and len(pending) < 2 * workers:
                    task = next(it, None)
                    if task is None:
                        exhausted = True
                        break
                    pending.append((task, pool.submit(_work, task)))
                if not pending:
                    break
                task, future = pending.popleft()
                packed = future.result()
            except BrokenProcessPool as e:
                raise WorkerDied(f"a worker process died ({e}); rerun with --resume") from e
            yield task, packed
    finally:  # an error in the writer (or a kill) must not leave queued tasks running
        pool.shutdown(wait=True, cancel_futures=True)
        gc.unfreeze()
