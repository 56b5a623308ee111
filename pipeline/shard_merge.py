"""Merging the finished partitions into the output folder: ``rejects.parquet``, ``shard-NNNNN.parquet``
and ``manifest.json`` last.

Why a module of its own: the merge is the run's last commit and must survive a kill at any point, which
is a different job from writing a partition. ``merge_partitions`` streams the partitions' chunk markers
(one at a time, so memory stays bounded) into ``rejects.parquet`` and the run's summary, writes a merge
plan (which rank shard becomes which ``shard-NNNNN.parquet``) before the first rename, performs the
renames (re-running the plan after a kill finishes it), and writes ``manifest.json`` last: a folder
that has it is complete.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.faults import pause_point
from pipeline.packing import SUMMARY_DIGITS
from pipeline.run_state import (
    DONE_FILE,
    MANIFEST,
    MERGE_PLAN,
    REJECTS,
    STATE_DIR,
    OutputError,
    atomic_write_json,
    discard,
    fsync_dir,
    partition_dir,
    read_json,
    shard_name,
)
from schemas.pair import REJECT_SCHEMA, SCHEMA_VERSION, RejectRecord, rejects_table


def iter_chunks(out_dir: Path, world_size: int) -> Iterator[tuple[int, dict]]:
    """Every committed chunk marker, rank by rank and in order, read one at a time."""
    for rank in range(world_size):
        for marker in sorted(partition_dir(out_dir, rank, world_size).glob("chunk-*.json")):
            yield rank, read_json(marker)


def partition_done(out_dir: str | Path, rank: int, world_size: int) -> dict | None:
    path = partition_dir(Path(out_dir), rank, world_size) / DONE_FILE
    return read_json(path) if path.exists() else None


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
    return round(sum(values) / 2, SUMMARY_DIGITS)


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
        discard(tmp)
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
        merge = read_json(plan_path)
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
        atomic_write_json(plan_path, merge)
    for step in merge["renames"]:
        src, dst = state / step["src"], out / step["dst"]
        if src.exists():
            os.replace(src, dst)
            pause_point("merge_renamed")
        elif not dst.exists():
            raise OutputError(f"cannot merge {str(out)!r}: {step['src']} is missing; use a new --out")
    fsync_dir(out)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "counts": merge["counts"],
        "shards": [step["dst"] for step in merge["renames"]],
        "rejects": REJECTS,
        **(extra() if callable(extra) else extra),
        "summary": merge["summary"],
    }
    pause_point("before_manifest")
    atomic_write_json(out / MANIFEST, manifest)
    fsync_dir(out)
    shutil.rmtree(state, ignore_errors=True)
    return manifest
