"""Stage 3 of a run: rename the partitions' shards into ``shard-NNNNN.parquet``, write
``rejects.parquet``, the dataset card and ``manifest.json`` last (with per-stage counts and seconds in
``stats``), and the run's summary (``RunSummary``, ``run_markdown``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipeline.batches import (
    RunError,
    write_error,
)
from pipeline.dataset_card import CARD, write_card
from pipeline.plan import PartitionResult, RunPlan, pipeline_version, result_fields
from pipeline.run_state import MANIFEST, OutputError
from pipeline.shard_merge import merge_partitions, partition_done


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
        results.append(PartitionResult(**result_fields(done)))
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
        raise write_error(out, e) from e
    _write_card(out, manifest)
    return summary_from_manifest(out, manifest)


def _write_card(out: Path, manifest: dict) -> None:
    """The dataset card (``pipeline.dataset_card``), after ``manifest.json``."""
    try:
        write_card(out, manifest)
    except OSError as e:
        raise write_error(out, e) from e


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
