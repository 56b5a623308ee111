"""Writes the output folder: pair shards, the rejects ledger, and ``manifest.json`` last.

Crash safety follows datatrove's pattern: every partition (rank) writes into its own folder under
``.medpref-progress/`` with rank-prefixed shard names, and commits in *chunks*. A chunk's shard is
written under a temporary name and renamed, then a marker naming the chunk's last manifest line,
its counts and its reject rows is written the same way. The marker is the commit point: resuming a
partition deletes any shard without a marker and re-reads the manifest after the last committed line.
Chunk boundaries depend only on what was buffered since the previous commit, so a resumed partition
writes byte-identical shards to an uninterrupted one.

When every partition is done, ``merge_partitions`` streams the markers into ``rejects.parquet``,
writes a merge plan (which rank shard becomes which ``shard-NNNNN.parquet``), performs the renames
(re-running the plan after a kill finishes it), and writes ``manifest.json`` last: a folder that has
it is complete. Memory is bounded by one chunk: markers are read back one at a time.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from clinical.metrics import word_edit_ratio
from pipeline.faults import pause_point
from pipeline.lock import LOCK_NAME, FileLock, acquire, holder_info
from schemas.pair import (
    PAIR_SCHEMA,
    REJECT_SCHEMA,
    SCHEMA_VERSION,
    PairRecord,
    RejectRecord,
    rejects_table,
)

STATE_DIR = ".medpref-progress"
MANIFEST = "manifest.json"
REJECTS = "rejects.parquet"
RUN_FILE = "run.json"
MERGE_PLAN = "merge.json"
DONE_FILE = "done.json"
REJECT_FLUSH_ROWS = 10_000  # a chunk also closes on this many buffered reject rows (bounded memory)
_SUMMARY_DIGITS = 4  # the median edit ratio is taken over ratios rounded to this many digits


class OutputError(RuntimeError):
    """The output folder cannot be used; the message is one line."""


@dataclass
class SampleResult:
    """Everything one manifest line produced. ``line_no`` orders results and is what resume skips."""

    line_no: int
    pairs: list[PairRecord] = field(default_factory=list)
    rejects: list[RejectRecord] = field(default_factory=list)
    responses: int = 0
    samples: int = 1
    seconds: Counter = field(default_factory=Counter)  # stage seconds spent on this line (manifest stats)
    items: Counter = field(default_factory=Counter)  # stage counts of this line


def edit_ratio(pair: PairRecord) -> float:
    """Word-level edit distance over the longer side (0 = identical, 1 = rewritten), as `eval` reports it."""
    return word_edit_ratio(pair.rejected, pair.chosen)


def pair_row(pair: PairRecord) -> dict:
    """``pair.to_row()`` without ``dataclasses.asdict``'s deep copy of every list (a third of the write
    time on text-only pairs): the nested records become plain dicts, their lists are shared."""
    row = dict(pair.__dict__)
    row["images"] = [dict(i.__dict__) for i in pair.images]
    row["corrupted_images"] = [dict(i.__dict__) for i in pair.corrupted_images]
    row["corruption"] = dict(pair.corruption.__dict__)
    row["edits"] = [dict(e.__dict__) for e in pair.edits]
    return row


def pair_nbytes(pair: PairRecord) -> int:
    """Rough in-memory size of a row (images dominate), to bound a shard's size."""
    images = sum(len(i.bytes or b"") for i in [*pair.images, *pair.corrupted_images])
    text = len(pair.chosen) + len(pair.rejected) + len(pair.reference) + len(pair.prompt) + len(pair.meta)
    return images + sum(len(m) for m in pair.corruption.masks) + text + 5 * len(pair.chosen_input_ids)


@dataclass
class LineFigures:
    """What the writer needs of one manifest line besides its pair rows (those are in the Arrow batch)."""

    line_no: int
    pairs: int  # how many rows of the batch are this line's, in order
    rejects: list[RejectRecord]
    responses: int
    samples: int
    seconds: Counter
    items: Counter
    nbytes: int  # ``pair_nbytes`` of its pairs plus its reject details: what bounds a shard's size
    error_types: list[str]  # its pairs' error types, pair after pair
    edit_ratios: list[float]  # each pair's ``edit_ratio``, rounded as the summary takes it


@dataclass
class PackedResults:
    """Results as the writer takes them: the pair rows as one Arrow record batch and each line's figures.
    Built by ``pack_results`` wherever the rows were made (a pool worker or the run's own process), so the
    writer's process never touches a ``PairRecord``. Pickled (from a pool worker), the batch travels as
    one Arrow IPC stream: a few buffers instead of thousands of Python objects."""

    lines: list[LineFigures]
    batch: pa.RecordBatch  # PAIR_SCHEMA rows of the lines, in order

    def __getstate__(self) -> dict:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, PAIR_SCHEMA) as ipc:
            ipc.write_batch(self.batch)
        return {"lines": self.lines, "rows": sink.getvalue()}

    def __setstate__(self, state: dict) -> None:
        self.lines = state["lines"]
        self.batch = pa.ipc.open_stream(state["rows"]).read_next_batch()


def pack_results(results: list[SampleResult]) -> PackedResults:
    """``results`` (in manifest order) as the writer takes them. Their figures gain the time spent here:
    building the rows is ``write`` time (shared over the lines by their pairs), the edit ratios ``summary``."""
    start = time.perf_counter()
    batch = pa.RecordBatch.from_pylist([pair_row(p) for r in results for p in r.pairs], schema=PAIR_SCHEMA)
    per_row = (time.perf_counter() - start) / max(1, batch.num_rows)
    lines = []
    for r in results:
        start = time.perf_counter()
        ratios = [round(edit_ratio(p), _SUMMARY_DIGITS) for p in r.pairs]
        r.seconds["write"] += per_row * len(r.pairs)
        r.seconds["summary"] += time.perf_counter() - start
        lines.append(LineFigures(
            r.line_no, len(r.pairs), r.rejects, r.responses, r.samples, r.seconds, r.items,
            sum(pair_nbytes(p) for p in r.pairs) + sum(len(x.detail) for x in r.rejects),
            [t for p in r.pairs for t in p.error_types], ratios))
    return PackedResults(lines, batch)


_IMAGE_COLUMNS = ("images", "corrupted_images")
_DTYPE_NAMES = {"float": "float32", "double": "float64", "halffloat": "float16"}


def _feature(arrow_type: pa.DataType) -> dict:
    """The Hugging Face ``datasets`` feature dict of an Arrow type (the subset PAIR_SCHEMA uses)."""
    if pa.types.is_struct(arrow_type):
        return {f.name: _feature(f.type) for f in arrow_type}
    if pa.types.is_list(arrow_type):
        return {"feature": _feature(arrow_type.value_type), "_type": "List"}
    return {"dtype": _DTYPE_NAMES.get(str(arrow_type), str(arrow_type)), "_type": "Value"}


@lru_cache(maxsize=1)
def pair_schema_metadata() -> dict[bytes, bytes]:
    """PAIR_SCHEMA's metadata plus the ``huggingface`` features entry, so ``datasets`` decodes the image
    columns as images (what TRL's DPOTrainer reads). The Arrow types stay exactly PAIR_SCHEMA's; this
    is written by hand so that writing a shard never imports ``datasets``."""
    features = {}
    for f in PAIR_SCHEMA:
        if f.name in _IMAGE_COLUMNS:
            features[f.name] = {"feature": {"_type": "Image"}, "_type": "List"}
        else:
            features[f.name] = _feature(f.type)
    meta = dict(PAIR_SCHEMA.metadata or {})
    meta[b"huggingface"] = json.dumps({"info": {"features": features}}).encode()
    return meta


# -- atomic files ------------------------------------------------------------------------------------
def _discard(tmp: Path) -> None:
    try:
        tmp.unlink()
    except OSError:
        pass


def _fsync_dir(path: Path) -> None:
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
        _discard(tmp)  # a full disk leaves no half-written temp file behind
        raise


def _atomic_write_json(path: Path, obj: dict) -> None:
    _atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode())


def _atomic_write_table(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise


def _read_json(path: Path) -> dict:
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
            previous = _read_json(run_file)
            if previous.get("run_key") != run_key:
                raise OutputError(f"cannot resume {str(out)!r}: it was started with a different configuration, "
                                  "manifest or partition count; use a new --out")
            return RunState(previous["run_id"], resumed=True, lock=lock)
        run_id = uuid.uuid4().hex
        try:
            _atomic_write_json(run_file, {"run_key": run_key, "run_id": run_id, "partitions": world_size})
        except OSError as e:
            raise OutputError(f"cannot write to {str(out)!r}: {e.strerror or e}") from e
        return RunState(run_id, lock=lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


# -- one partition -----------------------------------------------------------------------------------
class PartitionWriter:
    """Buffers whole samples of one partition and commits them in chunks of about ``shard_size`` pair
    rows (fewer when ``max_shard_bytes`` of rows, or ``REJECT_FLUSH_ROWS`` reject rows, are buffered).

    Only aggregates stay in memory after a commit; ``done`` holds ``done.json`` once the partition is
    closed (then the partition is never written again)."""

    def __init__(self, out_dir: str | Path, rank: int, world_size: int, shard_size: int, *,
                 max_shard_bytes: int | None = None):
        self.out_dir = Path(out_dir)
        self.rank, self.world_size = rank, world_size
        self.shard_size = shard_size
        self.max_shard_bytes = max_shard_bytes
        self.dir = partition_dir(self.out_dir, rank, world_size)
        self.last_line = 0  # the last manifest line committed (or buffered)
        self.chunks = 0
        self.shards = 0
        self.totals: Counter[str] = Counter()
        self.stage_seconds: Counter[str] = Counter()
        self.stage_items: Counter[str] = Counter()
        self.done: dict | None = None
        self._pending_seconds: Counter[str] = Counter()
        self._pending_items: Counter[str] = Counter()
        self._reset_buffer()
        self._open()

    def _reset_buffer(self) -> None:
        self._batches: list[pa.RecordBatch] = []  # slices of the added batches: this chunk's rows, in order
        self._rows = 0
        self._rejects: list[RejectRecord] = []
        self._error_types: list[str] = []
        self._ratios: list[float] = []
        self._samples = self._responses = self._bytes = 0
        self._first_line: int | None = None

    def _open(self) -> None:
        done = self.dir / DONE_FILE
        if done.exists():
            self.done = _read_json(done)
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink()
        committed = set()
        for marker in sorted(self.dir.glob("chunk-*.json")):
            chunk = _read_json(marker)
            if chunk["chunk"] != self.chunks:
                raise OutputError(f"cannot resume {str(self.out_dir)!r}: {marker.name} is out of sequence; "
                                  "use a new --out")
            if chunk["shard"] is not None:
                if not (self.dir / chunk["shard"]).exists():
                    raise OutputError(f"cannot resume {str(self.out_dir)!r}: {chunk['shard']} is marked complete "
                                      "but missing; use a new --out")
                committed.add(chunk["shard"])
                self.shards += 1
            self.chunks += 1
            self.last_line = max(self.last_line, chunk["last_line"])
            self.totals.update(chunk["counts"])
            self.stage_seconds.update(chunk["stats"]["seconds"])
            self.stage_items.update(chunk["stats"]["items"])
        for shard in self.dir.glob("shard-r*.parquet"):
            if shard.name not in committed:  # renamed before a kill, never committed: redone
                shard.unlink()

    # -- writing -----------------------------------------------------------------------------
    def add(self, packed: PackedResults) -> None:
        """Buffer whole samples (a chunk may close between any two of them); a line at or before the last
        one added (a retried task) is skipped."""
        if self.done is not None:
            raise OutputError(f"partition {self.rank} of {str(self.out_dir)!r} is already complete")
        batch = packed.batch
        start = end = 0  # this chunk's rows of ``batch``: [start, end)
        for line in packed.lines:
            if line.line_no <= self.last_line:
                self._take(batch, start, end)
                start = end = end + line.pairs
                continue
            end += line.pairs
            self.last_line = line.line_no
            self._pending_seconds.update(line.seconds)  # committed with the rows they describe
            self._pending_items.update(line.items)
            if self._first_line is None:
                self._first_line = line.line_no
            self._samples += line.samples
            self._rows += line.pairs
            self._rejects.extend(line.rejects)
            self._error_types.extend(line.error_types)
            self._ratios.extend(line.edit_ratios)
            self._responses += line.responses
            self._bytes += line.nbytes
            if (self._rows >= self.shard_size or len(self._rejects) >= REJECT_FLUSH_ROWS
                    or (self.max_shard_bytes is not None and self._bytes >= self.max_shard_bytes)):
                self._take(batch, start, end)
                start = end
                self.flush()
        self._take(batch, start, end)

    def _take(self, batch: pa.RecordBatch, start: int, end: int) -> None:
        if end > start:
            self._batches.append(batch.slice(start, end - start))

    def flush(self) -> None:
        """Commit the buffered samples: the shard (if any pairs), then the marker."""
        if self._first_line is None:
            return
        start = time.perf_counter()
        shard = None
        if self._rows:
            shard = rank_shard_name(self.rank, self.shards)
            table = pa.Table.from_batches(self._batches, schema=PAIR_SCHEMA).combine_chunks()  # faster to write
            _atomic_write_table(self.dir / shard, table.replace_schema_metadata(pair_schema_metadata()))
            pause_point("shard_written")
        seconds = Counter(self._pending_seconds)
        seconds["write"] += time.perf_counter() - start
        items = Counter(self._pending_items)
        items["write"] += self._rows
        items["summary"] += self._rows
        counts = {"samples": self._samples, "responses": self._responses,
                  "pairs": self._rows, "rejects": len(self._rejects)}
        chunk = {
            "chunk": self.chunks,
            "shard": shard,
            "first_line": self._first_line,
            "last_line": self.last_line,
            "counts": counts,
            "error_types": dict(Counter(self._error_types)),
            "edit_ratios": self._ratios,
            "stats": {"seconds": {k: round(v, 6) for k, v in seconds.items()}, "items": dict(items)},
            "rejects": [r.to_row() for r in self._rejects],
        }
        _atomic_write_json(self.dir / f"chunk-{self.chunks:05d}.json", chunk)
        pause_point("chunk_committed")
        self.chunks += 1
        self.shards += shard is not None
        self.totals.update(counts)
        self.stage_seconds.update(seconds)
        self.stage_items.update(items)
        self._pending_seconds.clear()
        self._pending_items.clear()
        self._reset_buffer()

    def close(self, info: dict | None = None) -> dict:
        """Flush and mark the partition done (``info`` is kept in ``done.json``); returns ``done.json``."""
        if self.done is not None:
            return self.done
        self.flush()
        done = {
            "rank": self.rank,
            "world_size": self.world_size,
            "chunks": self.chunks,
            "shards": self.shards,
            "counts": {k: int(self.totals.get(k, 0)) for k in ("samples", "responses", "pairs", "rejects")},
            "stats": {"seconds": {k: round(v, 6) for k, v in sorted(self.stage_seconds.items())},
                      "items": dict(sorted(self.stage_items.items()))},
            **(info or {}),
        }
        _atomic_write_json(self.dir / DONE_FILE, done)
        self.done = done
        return done


def iter_chunks(out_dir: Path, world_size: int) -> Iterator[tuple[int, dict]]:
    """Every committed chunk marker, rank by rank and in order, read one at a time."""
    for rank in range(world_size):
        for marker in sorted(partition_dir(out_dir, rank, world_size).glob("chunk-*.json")):
            yield rank, _read_json(marker)


def partition_done(out_dir: str | Path, rank: int, world_size: int) -> dict | None:
    path = partition_dir(Path(out_dir), rank, world_size) / DONE_FILE
    return _read_json(path) if path.exists() else None


# -- merging -------------------------------------------------------------------------------------------
def _median_of_counts(hist: Counter) -> float | None:
    n = sum(hist.values())
    if not n:
        return None
    wanted = [(n - 1) // 2, n // 2]
    values, seen = [], 0
    for value in sorted(hist):
        count = hist[value]
        while wanted and wanted[0] < seen + count:
            values.append(value)
            wanted.pop(0)
        seen += count
    return round(sum(values) / 2, _SUMMARY_DIGITS)


def _write_rejects(out_dir: Path, world_size: int) -> tuple[Counter, Counter, Counter, Counter, list]:
    """Stream every chunk's reject rows into ``rejects.parquet``; collect the summary on the way."""
    path = out_dir / REJECTS
    tmp = path.with_name(path.name + ".tmp")
    reasons, stages, errors, ratios = Counter(), Counter(), Counter(), Counter()
    plan = []
    final_index = 0
    try:
        with pq.ParquetWriter(tmp, REJECT_SCHEMA, compression="zstd") as w:
            for rank, chunk in iter_chunks(out_dir, world_size):
                rows = chunk["rejects"]
                if rows:
                    w.write_table(rejects_table([RejectRecord(**r) for r in rows]))
                reasons.update(r["reason"] for r in rows)
                stages.update(r["stage"] for r in rows)
                errors.update(chunk["error_types"])
                ratios.update(chunk["edit_ratios"])
                if chunk["shard"] is not None:
                    src = f"{partition_dir(out_dir, rank, world_size).name}/{chunk['shard']}"
                    plan.append({"src": src, "dst": shard_name(final_index)})
                    final_index += 1
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        pause_point("rejects_tmp_written")
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise
    return reasons, stages, errors, ratios, plan


def merge_partitions(out_dir: str | Path, world_size: int, extra: dict | Callable[[], dict]) -> dict:
    """All partitions done -> ``rejects.parquet``, ``shard-NNNNN.parquet`` and ``manifest.json`` (last).

    ``extra``: the manifest's other fields (a callable is asked just before the manifest is written,
    so timings can include the merge itself).

    Safe to repeat after a kill at any point: the rejects file is rewritten, the merge plan (written
    before the first rename) is finished, and ``manifest.json`` is written only at the very end."""
    out = Path(out_dir)
    if (out / MANIFEST).exists():
        return json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    state = out / STATE_DIR
    plan_path = state / MERGE_PLAN
    dones = []
    for rank in range(world_size):
        done = partition_done(out, rank, world_size)
        if done is None:
            raise OutputError(f"cannot merge {str(out)!r}: partition {rank} of {world_size} is not finished; "
                              "rerun with --resume")
        dones.append(done)
    if plan_path.exists():
        merge = _read_json(plan_path)
    else:
        for tmp in out.glob("*.tmp"):
            tmp.unlink()
        reasons, stages, errors, ratios, renames = _write_rejects(out, world_size)
        totals = Counter()
        for d in dones:
            totals.update(d["counts"])
        merge = {
            "renames": renames,
            "counts": {k: int(totals.get(k, 0)) for k in ("samples", "responses", "pairs", "rejects")},
            "summary": {
                "rejects_by_reason": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
                "rejects_by_stage": dict(sorted(stages.items(), key=lambda kv: (-kv[1], kv[0]))),
                "error_types": dict(sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))),
                "median_edit_ratio": _median_of_counts(Counter({float(k): v for k, v in ratios.items()})),
            },
        }
        _atomic_write_json(plan_path, merge)
    for step in merge["renames"]:
        src, dst = state / step["src"], out / step["dst"]
        if src.exists():
            os.replace(src, dst)
            pause_point("merge_renamed")
        elif not dst.exists():
            raise OutputError(f"cannot merge {str(out)!r}: {step['src']} is missing; use a new --out")
    _fsync_dir(out)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "counts": merge["counts"],
        "shards": [step["dst"] for step in merge["renames"]],
        "rejects": REJECTS,
        **(extra() if callable(extra) else extra),
        "summary": merge["summary"],
    }
    pause_point("before_manifest")
    _atomic_write_json(out / MANIFEST, manifest)
    _fsync_dir(out)
    shutil.rmtree(state, ignore_errors=True)
    return manifest
