"""The output folder on disk: its file names, atomic writes, and the run's state folder.

Why a module of its own: every file of a run is written the same crash-safe way (a temporary name,
``fsync``, ``os.replace``; a failure leaves no temporary file behind), and the writer, the merge and
the run plan all need the folder's layout (``.medpref-progress/`` with one ``part-*`` folder per
partition, rank-prefixed shard names, ``manifest.json`` last). ``open_run_state`` starts or resumes a
run in a folder: it takes the folder's writer lock (``pipeline.lock``) and refuses anything that would
mix two runs' files.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.lock import LOCK_NAME, FileLock, acquire, holder_info

STATE_DIR = ".medpref-progress"
MANIFEST = "manifest.json"
REJECTS = "rejects.parquet"
RUN_FILE = "run.json"
MERGE_PLAN = "merge.json"
DONE_FILE = "done.json"


class OutputError(RuntimeError):
    """The output folder cannot be used; the message is one line."""


# -- atomic files ------------------------------------------------------------------------------------
def discard(tmp: Path) -> None:
    """Remove a temporary file if it is there (a failed write leaves none behind)."""
    try:
        tmp.unlink()
    except OSError:
        pass


def fsync_dir(path: Path) -> None:
    """Make the renames in a folder durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)  # a full disk leaves no half-written temp file behind
        raise


def atomic_write_json(path: Path, obj: dict) -> None:
    """``obj`` as indented JSON at ``path``, all or nothing."""
    _atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode())


def atomic_write_table(path: Path, table: pa.Table) -> None:
    """``table`` as a zstd Parquet file at ``path``, all or nothing."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def read_json(path: Path) -> dict:
    """A progress file; one that cannot be read is an ``OutputError``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise OutputError(f"cannot read progress file {str(path)!r}: {e}; use a new --out") from e


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def rank_shard_name(rank: int, index: int) -> str:
    return f"shard-r{rank:05d}-{index:05d}.parquet"


def partition_dir(out_dir: Path, rank: int, world_size: int) -> Path:
    return Path(out_dir) / STATE_DIR / f"part-{rank:05d}-of-{world_size:05d}"


# -- the run's state -----------------------------------------------------------------------------------
@dataclass
class RunState:
    run_id: str  # fresh per started run: a new folder never reuses a cached partition result
    complete: bool = False
    resumed: bool = False  # an earlier start of this run had left state behind, and this one continues it
    lock: FileLock | None = None  # the folder's writer lock (None for a complete folder)


def open_run_state(out_dir: str | Path, run_key: str, world_size: int, resume: bool, *,
                   holder: dict | None = None, wait_for_lock: bool = False) -> RunState:
    """Start (or, with ``resume``, continue) a run in ``out_dir``; refuse anything that would mix runs.

    Takes the folder's writer lock (``pipeline.lock``) before anything is written, and keeps it in the
    returned state: a second writer is refused (``LockHeld``) or, with ``wait_for_lock``, waits."""
    while True:
        state = _open_run_state(Path(out_dir), run_key, world_size, resume, holder or holder_info("run"),
                                wait_for_lock)
        if state is not None:
            return state


def _lock_folder(out: Path, holder: dict, wait: bool) -> FileLock | None:
    return acquire(out / STATE_DIR / LOCK_NAME, holder, wait=wait, label=f"output folder {str(out)!r}")


def _open_run_state(out: Path, run_key: str, world_size: int, resume: bool, holder: dict,
                    wait: bool) -> RunState | None:
    state = out / STATE_DIR
    if (out / MANIFEST).exists():
        if resume:
            shutil.rmtree(state, ignore_errors=True)  # killed after manifest.json, before the cleanup
            return RunState("", complete=True)
        raise OutputError(f"output folder {str(out)!r} already holds a complete run (manifest.json); "
                          "choose another --out")
    existed = state.exists()
    if not existed and out.exists() and any(out.glob("shard-*.parquet")):
        raise OutputError(f"output folder {str(out)!r} already holds shards; choose an empty folder")
    lock = None
    if existed:  # the holder's name first: "unfinished" may mean "being written right now"
        lock = _lock_folder(out, holder, wait)
        if lock is None:
            return None
        if not resume:
            lock.release()
            raise OutputError(f"output folder {str(out)!r} holds an unfinished run; pass --resume to finish it")
    try:
        try:
            state.mkdir(parents=True, exist_ok=True)
            probe = state / f".write-probe-{os.getpid()}"  # two starting writers never share one
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            raise OutputError(f"output folder {str(out)!r} is not writable: {e.strerror or e}") from e
        if lock is None:
            lock = _lock_folder(out, holder, wait)
            if lock is None:
                return None
        if (out / MANIFEST).exists():  # finished while this one waited
            lock.release()
            return None
        run_file = state / RUN_FILE
        if run_file.exists():
            previous = read_json(run_file)
            if previous.get("run_key") != run_key:
                raise OutputError(f"cannot resume {str(out)!r}: it was started with a different configuration, "
                                  "manifest or partition count; use a new --out")
            return RunState(previous["run_id"], resumed=True, lock=lock)
        run_id = uuid.uuid4().hex
        try:
            atomic_write_json(run_file, {"run_key": run_key, "run_id": run_id, "partitions": world_size})
        except OSError as e:
            raise OutputError(f"cannot write to {str(out)!r}: {e.strerror or e}") from e
        return RunState(run_id, lock=lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise

