"""Writes one partition of a run: its pair shards and chunk markers under ``.medpref-progress/``.

Crash safety follows datatrove's pattern: every partition (rank) writes into its own folder under
``.medpref-progress/`` with rank-prefixed shard names, and commits in *chunks*. A chunk's shard is
written under a temporary name and renamed, then a marker naming the chunk's last manifest line,
its counts and its reject rows is written the same way. The marker is the commit point: resuming a
partition deletes any shard without a marker and re-reads the manifest after the last committed line.
Chunk boundaries depend only on what was buffered since the previous commit, so a resumed partition
writes byte-identical shards to an uninterrupted one.

The rows come packed (``pipeline.packing``), the folder's layout and atomic writes are
``pipeline.run_state``'s, and when every partition is done ``pipeline.shard_merge`` turns the markers
into the final folder.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pyarrow as pa

from pipeline.faults import pause_point
from pipeline.packing import PackedResults, pair_schema_metadata
from pipeline.run_state import (
    DONE_FILE,
    OutputError,
    atomic_write_json,
    atomic_write_table,
    partition_dir,
    rank_shard_name,
    read_json,
)
from schemas.pair import PAIR_SCHEMA, RejectRecord

REJECT_FLUSH_ROWS = 10_000  # a chunk also closes on this many buffered reject rows (bounded memory)


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
            self.done = read_json(done)
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink()
        committed = set()
        for marker in sorted(self.dir.glob("chunk-*.json")):
            chunk = read_json(marker)
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
            atomic_write_table(self.dir / shard, table.replace_schema_metadata(pair_schema_metadata()))
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
        atomic_write_json(self.dir / f"chunk-{self.chunks:05d}.json", chunk)
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
        atomic_write_json(self.dir / DONE_FILE, done)
        self.done = done
        return done

