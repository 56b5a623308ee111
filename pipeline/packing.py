"""Packing one manifest line's results into what the writer takes: Arrow rows and per-line figures.

Why a module of its own: the rows are built wherever the pairs were made (a pool worker or the run's
own process), never in the writer, so this is the code both sides share. ``pack_results`` turns
``SampleResult``s into one Arrow record batch of ``PAIR_SCHEMA`` rows plus each line's figures
(``LineFigures``: counts, reject rows, error types, edit ratios, size); ``PackedResults`` travels
between processes as one Arrow IPC stream. ``pair_schema_metadata`` is the schema metadata every pair
shard carries (the Hugging Face ``datasets`` features, written by hand so writing never imports it).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

import pyarrow as pa

from clinical.metrics import word_edit_ratio
from schemas.pair import PAIR_SCHEMA, PairRecord, RejectRecord

SUMMARY_DIGITS = 4  # the median edit ratio is taken over ratios rounded to this many digits


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
        ratios = [round(edit_ratio(p), SUMMARY_DIGITS) for p in r.pairs]
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

