"""Writes the output folder: pair shards, the rejects ledger, and ``manifest.json`` last.

Crash safety follows the datatrove pattern of completion markers. Results are buffered per whole
sample (a sample's pairs never straddle two shards). A flush commits one *chunk*: the shard is
written under a temporary name and renamed, then a marker listing the chunk's completed sample keys,
its reject rows and its counts is written the same way. The marker is the commit point: on
``--resume`` every marked sample is skipped, and any shard without a marker is deleted and redone.
Indices advance only after the marker lands, so repeating a failed flush rewrites the same files.
``manifest.json`` is written last; a folder that has it is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.pair import PAIR_SCHEMA, SCHEMA_VERSION, PairRecord, RejectRecord, pairs_table, rejects_table

STATE_DIR = ".medpref-progress"
MANIFEST = "manifest.json"
REJECTS = "rejects.parquet"


class OutputError(RuntimeError):
    """The output folder cannot be used; the message is one line."""


@dataclass
class SampleResult:
    """Everything one manifest entry produced. ``key`` is unique per entry (the sample id, or
    ``line-N`` for a line that never became a sample)."""

    key: str
    pairs: list[PairRecord] = field(default_factory=list)
    rejects: list[RejectRecord] = field(default_factory=list)
    responses: int = 0


def edit_ratio(pair: PairRecord) -> float:
    """Word-level edit distance over the longer side (0 = identical, 1 = rewritten), as `eval` reports it."""
    from pipeline.evaluate import word_edit_ratio

    return word_edit_ratio(pair.rejected, pair.chosen)


def pair_nbytes(pair: PairRecord) -> int:
    """Rough in-memory size of a row (images dominate), to bound a shard's size."""
    images = sum(len(i.bytes or b"") for i in [*pair.images, *pair.corrupted_images])
    text = len(pair.chosen) + len(pair.rejected) + len(pair.reference) + len(pair.prompt) + len(pair.meta)
    return images + sum(len(m) for m in pair.corruption.masks) + text + 5 * len(pair.chosen_input_ids)


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


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write_json(path: Path, obj: dict) -> None:
    _atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode())


def _atomic_write_table(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


class ShardWriter:
    """Buffers whole samples and commits them in chunks of about ``shard_size`` pair rows (or fewer
    when ``max_shard_bytes`` of rows are buffered first: rows with images are large)."""

    def __init__(self, out_dir: str | Path, shard_size: int, *, run_key: str = "", resume: bool = False,
                 max_shard_bytes: int | None = None):
        self.out_dir = Path(out_dir)
        self.shard_size = shard_size
        self.max_shard_bytes = max_shard_bytes
        self.run_key = run_key
        self.state_dir = self.out_dir / STATE_DIR
        self.completed: set[str] = set()
        self.chunks: list[dict] = []
        self._pairs: list[PairRecord] = []
        self._rejects: list[RejectRecord] = []
        self._keys: list[str] = []
        self._responses = 0
        self._bytes = 0
        self.complete = False
        self._open(resume)

    # -- opening -----------------------------------------------------------------------------
    def _open(self, resume: bool) -> None:
        out = self.out_dir
        if (out / MANIFEST).exists():
            if resume:
                self.complete = True
                return
            raise OutputError(f"output folder {str(out)!r} already holds a complete run (manifest.json); "
                              "choose another --out")
        if self.state_dir.exists() and not resume:
            raise OutputError(f"output folder {str(out)!r} holds an unfinished run; pass --resume to finish it")
        if not resume and out.exists() and any(out.glob("shard-*.parquet")):
            raise OutputError(f"output folder {str(out)!r} already holds shards; choose an empty folder")
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            probe = self.state_dir / ".write-probe"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            raise OutputError(f"output folder {str(out)!r} is not writable: {e.strerror or e}") from e
        run_file = self.state_dir / "run.json"
        if run_file.exists():
            previous = json.loads(run_file.read_text()).get("run_key", "")
            if previous != self.run_key:
                raise OutputError(f"cannot resume {str(out)!r}: it was started with a different configuration "
                                  "or manifest; use a new --out")
        else:
            _atomic_write_json(run_file, {"run_key": self.run_key})
        self._load_markers()

    def _load_markers(self) -> None:
        for tmp in [*self.out_dir.glob("*.tmp"), *self.state_dir.glob("*.tmp")]:
            tmp.unlink()
        for marker in sorted(self.state_dir.glob("chunk-*.json")):
            chunk = json.loads(marker.read_text())
            if chunk["shard"] is not None and not (self.out_dir / chunk["shard"]).exists():
                raise OutputError(f"cannot resume {str(self.out_dir)!r}: {chunk['shard']} is marked complete "
                                  "but missing; use a new --out")
            self.chunks.append(chunk)
            self.completed.update(chunk["keys"])
        committed = {c["shard"] for c in self.chunks if c["shard"]}
        for shard in self.out_dir.glob("shard-*.parquet"):
            if shard.name not in committed:  # written before a crash, never committed: redone
                shard.unlink()

    @property
    def shards(self) -> list[str]:
        return [c["shard"] for c in self.chunks if c["shard"]]

    # -- writing -----------------------------------------------------------------------------
    def add(self, result: SampleResult) -> None:
        """Buffer one whole sample; adding a key twice (a retried task) is a no-op."""
        if self.complete:
            raise OutputError(f"output folder {str(self.out_dir)!r} is already complete")
        if result.key in self.completed or result.key in self._keys:
            return
        self._keys.append(result.key)
        self._pairs.extend(result.pairs)
        self._rejects.extend(result.rejects)
        self._responses += result.responses
        self._bytes += sum(pair_nbytes(p) for p in result.pairs)
        if len(self._pairs) >= self.shard_size or (
                self.max_shard_bytes is not None and self._bytes >= self.max_shard_bytes):
            self.flush()

    def flush(self) -> None:
        """Commit the buffered samples: shard (if any pairs), then the marker."""
        if not self._keys:
            return
        index = len(self.chunks)
        shard = None
        if self._pairs:
            shard = shard_name(len(self.shards))
            table = pairs_table(self._pairs).replace_schema_metadata(pair_schema_metadata())
            _atomic_write_table(self.out_dir / shard, table)
        chunk = {
            "chunk": index,
            "shard": shard,
            "keys": list(self._keys),
            "counts": {"samples": len(self._keys), "responses": self._responses,
                       "pairs": len(self._pairs), "rejects": len(self._rejects)},
            "error_types": dict(Counter(t for p in self._pairs for t in p.error_types)),
            "edit_ratios": [round(edit_ratio(p), 6) for p in self._pairs],
            "rejects": [r.to_row() for r in self._rejects],
        }
        _atomic_write_json(self.state_dir / f"chunk-{index:05d}.json", chunk)
        self.chunks.append(chunk)
        self.completed.update(self._keys)
        self._keys, self._pairs, self._rejects, self._responses, self._bytes = [], [], [], 0, 0

    # -- finishing ---------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        totals = Counter()
        for c in self.chunks:
            totals.update(c["counts"])
        return {k: int(totals.get(k, 0)) for k in ("samples", "responses", "pairs", "rejects")}

    def summary(self) -> dict:
        reasons = Counter(r["reason"] for c in self.chunks for r in c["rejects"])
        errors = Counter()
        for c in self.chunks:
            errors.update(c["error_types"])
        ratios = [x for c in self.chunks for x in c["edit_ratios"]]
        return {
            "rejects_by_reason": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
            "error_types": dict(sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))),
            "median_edit_ratio": round(statistics.median(ratios), 4) if ratios else None,
        }

    def finalize(self, extra: dict) -> dict:
        """Flush, write ``rejects.parquet``, then ``manifest.json`` (last), then drop the progress state."""
        if self.complete:
            return json.loads((self.out_dir / MANIFEST).read_text())
        self.flush()
        rejects = [RejectRecord(**row) for c in self.chunks for row in c["rejects"]]
        _atomic_write_table(self.out_dir / REJECTS, rejects_table(rejects))
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "counts": self.counts(),
            "shards": self.shards,
            "rejects": REJECTS,
            **extra,
            "summary": self.summary(),
        }
        _atomic_write_json(self.out_dir / MANIFEST, manifest)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.complete = True
        return manifest
