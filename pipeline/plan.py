"""Stage 1 of a run, and what every stage is handed: the ``RunPlan`` (small and picklable: what a
remote worker receives), and a partition's ``PartitionResult``.

``plan_run`` scans the manifest once (sha256, line count, duplicate ids), checks that the pair builder
and sampler can be set up, and opens or resumes the output folder under its lock.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from pipeline.batches import (
    RunError,
    shared_builder,
    shared_sampler,
)
from pipeline.config import PipelineConfig
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
from pipeline.manifest_reader import ManifestError, ManifestScan, scan_manifest
from pipeline.run_state import (
    MANIFEST,
    STATE_DIR,
    OutputError,
    open_run_state,
    partition_dir,
)

MAX_PARTITIONS = 4096


def pipeline_version() -> str:
    try:
        from importlib.metadata import version

        return version("medpref")
    except Exception:  # noqa: BLE001 - not installed (running from a checkout)
        return "0.1.0"


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


def result_fields(done: dict) -> dict:
    keys = set(PartitionResult.model_fields)
    return {k: v for k, v in done.items() if k in keys}


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
