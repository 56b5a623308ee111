"""The report's figures, streamed from a run folder: open the folder, scan every pair's small columns
batch by batch through pyarrow (counts, edit-ratio and mask-fraction histograms, corruption sources) and
choose, in the same pass, the seeded sample of pairs that become cards (``report.cards``)."""


from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

MANIFEST = "manifest.json"
REJECTS = "rejects.parquet"
FINE_BINS = 200  # histogram resolution while streaming (the page shows 20 bins; medians use these)
SHOWN_BINS = 20
# Columns read for every pair: small ones only (no images, masks, token ids, prompt or reference).
IMAGE_PATHS = ["images.list.element.path", "corrupted_images.list.element.path"]  # list lengths, no bytes
STAT_COLUMNS = ["task", "on_policy", "chosen", "rejected", "edits", "error_types", *IMAGE_PATHS,
                "corruption.method", "corruption.mask_fraction", "corruption.source", "corruption.reason"]
MAX_TEXT = 6000  # characters of one text field kept on a card (the file size bound needs a cap)
MAX_META = 1500
REQUIRED_COLUMNS = ["pair_id", "sample_id", "task", "prompt", "chosen", "rejected", "edits", "error_types"]


class ReportError(ValueError):
    """The folder cannot be reported on; the message is one line."""


@dataclass
class ReportOptions:
    """How much of the run the page shows. ``sample``: uniformly sampled pair cards; ``per_class``:
    extra cards per error type, task, on-policy side and corruption source; ``thumb``: thumbnail
    size in pixels (longer side); ``seed``: picks the sample (the same seed gives the same cards)."""

    sample: int = 300
    per_class: int = 10
    rejects_sample: int = 200
    thumb: int = 128
    seed: int = 0
    batch_size: int = 8192


def cap_text(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f" … [{len(text) - limit} more characters]"


# ---------------------------------------------------------------- the run folder


@dataclass
class RunFolder:
    root: Path
    manifest: dict
    shards: list[Path]
    rejects: Path | None


def open_run(out_dir: str | Path) -> RunFolder:
    """A finished run: ``manifest.json`` present, every shard it lists readable."""
    root = Path(out_dir)
    path = root / MANIFEST
    if not path.is_file():
        raise ReportError(f"{str(root)!r} is not a finished run (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ReportError(f"{path}: cannot read the manifest: {e}") from e
    if not isinstance(manifest, dict):
        raise ReportError(f"{path}: the manifest is not a JSON object")
    shards = [root / str(name) for name in manifest.get("shards") or []]
    missing = [s.name for s in shards if not s.is_file()]
    if missing:
        raise ReportError(f"{path}: listed shard(s) missing: {', '.join(missing[:5])}")
    rejects = root / str(manifest.get("rejects") or REJECTS)
    return RunFolder(root, manifest, shards, rejects if rejects.is_file() else None)


# ---------------------------------------------------------------- sampling


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-spread 64-bit key per row index (vectorised, wraps mod 2**64)."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def row_keys(start: int, n: int, seed: int) -> np.ndarray:
    """Random-looking keys of rows ``start .. start+n``; the ``k`` smallest keys are a uniform sample."""
    with np.errstate(over="ignore"):
        salt = _mix64(np.array([seed % 2**64], dtype=np.uint64))[0]
        return _mix64(np.arange(start, start + n, dtype=np.uint64) ^ salt)


class Reservoir:
    """Keeps the ``k`` rows with the smallest keys seen so far (bounded memory, one pass)."""

    def __init__(self, k: int):
        self.k = k
        self.keys = np.empty(0, np.uint64)
        self.rows = np.empty(0, np.int64)

    def offer(self, keys: np.ndarray, rows: np.ndarray) -> None:
        if self.k <= 0 or len(keys) == 0:
            return
        keys, rows = np.concatenate([self.keys, keys]), np.concatenate([self.rows, rows])
        if len(keys) > self.k:
            keep = np.argpartition(keys, self.k - 1)[: self.k]
            keys, rows = keys[keep], rows[keep]
        self.keys, self.rows = keys, rows


class StrataSampler:
    """A uniform reservoir plus one small reservoir per class value, so rare classes get cards. A
    facet keeps at most ``MAX_CLASSES`` values (a free-text column must not grow the sample)."""

    MAX_CLASSES = 32

    def __init__(self, uniform: int, per_class: int):
        self.uniform = Reservoir(uniform)
        self.per_class = per_class
        self.classes: dict[tuple[str, str], Reservoir] = {}
        self._per_facet: Counter = Counter()

    def reservoir(self, facet: str, value: str) -> Reservoir | None:
        key = (facet, value)
        if key not in self.classes:
            if self._per_facet[facet] >= self.MAX_CLASSES:
                return None
            self._per_facet[facet] += 1
            self.classes[key] = Reservoir(self.per_class)
        return self.classes[key]

    def offer_class(self, facet: str, values: np.ndarray, keys: np.ndarray, rows: np.ndarray) -> None:
        """``values``: one label per row (object array; None is skipped)."""
        for value in {v for v in values.tolist() if v is not None}:
            res = self.reservoir(facet, str(value))
            if res is not None:
                hit = values == value
                res.offer(keys[hit], rows[hit])

    def chosen(self) -> dict[int, tuple[int, bool]]:
        """row -> (key, whether it is in the uniform sample)."""
        out = {int(r): (int(k), True) for k, r in zip(self.uniform.keys, self.uniform.rows, strict=True)}
        for res in self.classes.values():
            for k, r in zip(res.keys, res.rows, strict=True):
                out.setdefault(int(r), (int(k), False))
        return out


# ---------------------------------------------------------------- aggregate statistics


@dataclass
class PairStats:
    pairs: int = 0
    tasks: Counter = field(default_factory=Counter)
    on_policy: Counter = field(default_factory=Counter)
    pairs_by_error: Counter = field(default_factory=Counter)
    edits_by_error: Counter = field(default_factory=Counter)
    edits_per_pair: Counter = field(default_factory=Counter)
    methods: Counter = field(default_factory=Counter)
    sources: Counter = field(default_factory=Counter)
    no_image_reasons: Counter = field(default_factory=Counter)
    images: Counter = field(default_factory=Counter)
    edit_ratio_hist: np.ndarray = field(default_factory=lambda: np.zeros(FINE_BINS, np.int64))
    mask_fraction_hist: np.ndarray = field(default_factory=lambda: np.zeros(FINE_BINS, np.int64))
    with_mask_fraction: int = 0


def _counts(arr: pa.Array, none_label: str | None = None) -> Counter:
    out = Counter()
    for item in pc.value_counts(arr).to_pylist():
        value = item["values"]
        if value is None:
            if none_label is None:
                continue
            value = none_label
        out[str(value)] += int(item["counts"])
    return out


def _as_np(arr: pa.Array, dtype) -> np.ndarray:
    return np.asarray(arr.fill_null(0).to_numpy(zero_copy_only=False), dtype=dtype)


def edit_ratios(batch: pa.RecordBatch) -> np.ndarray:
    """Per pair: the word-level edit ratio between rejected and chosen (``clinical.metrics``), the figure
    the run summary and `build-pairs eval` report."""
    from clinical.metrics import word_edit_ratio

    chosen, rejected = batch.column("chosen").to_pylist(), batch.column("rejected").to_pylist()
    return np.array([word_edit_ratio(r or "", c or "") for r, c in zip(rejected, chosen, strict=True)], np.float64)


def _histogram(values: np.ndarray) -> np.ndarray:
    return np.histogram(np.clip(values, 0.0, 1.0), bins=FINE_BINS, range=(0.0, 1.0))[0]


def _flat_field(batch: pa.RecordBatch, name: str) -> pa.Array:
    """A field of the ``corruption`` struct, or nulls where the shard does not have it."""
    col = _column(batch, "corruption")
    return col.field(name) if pa.types.is_struct(col.type) and col.type.get_field_index(name) >= 0 \
        else pa.nulls(batch.num_rows)


def _has_column(schema: pa.Schema, path: str) -> bool:
    """Whether a dotted column path (``corruption.reason``, ``images.list.element.path``) exists."""
    head, *rest = path.split(".")
    if head not in schema.names:
        return False
    t = schema.field(head).type
    for part in rest:
        if pa.types.is_list(t) and part in ("list", "element"):
            t = t.value_type if part == "element" else t
        elif pa.types.is_struct(t) and t.get_field_index(part) >= 0:
            t = t.field(part).type
        else:
            return False
    return True


def columns_present(pf: pq.ParquetFile, wanted: list[str], path: Path) -> list[str]:
    """The wanted columns this shard has; the contract's text columns must be there."""
    schema = pf.schema_arrow
    missing = [c for c in REQUIRED_COLUMNS if c in wanted and not _has_column(schema, c)]
    if missing:
        raise ReportError(f"{path}: not a pair shard (missing column(s) {', '.join(missing)})")
    return [c for c in wanted if _has_column(schema, c)]


def _column(batch: pa.RecordBatch, name: str, type_: pa.DataType = pa.null()) -> pa.Array:
    """A column of the batch, or nulls where the shard does not have it."""
    i = batch.schema.get_field_index(name)
    return batch.column(i) if i >= 0 else pa.nulls(batch.num_rows, type_)


def scan_pairs(shards: Iterable[Path], options: ReportOptions) -> tuple[PairStats, StrataSampler]:
    """One streaming pass over the small columns of every shard: the statistics and the card sample."""
    stats = PairStats()
    sampler = StrataSampler(options.sample, options.per_class)
    start = 0
    for shard in shards:
        pf = pq.ParquetFile(shard, pre_buffer=False, buffer_size=1 << 20)
        for batch in pf.iter_batches(batch_size=options.batch_size, columns=columns_present(pf, STAT_COLUMNS, shard)):
            n = batch.num_rows
            if n == 0:
                continue
            rows = np.arange(start, start + n, dtype=np.int64)
            keys = row_keys(start, n, options.seed)
            start += n
            stats.pairs += n
            stats.tasks.update(_counts(batch.column("task"), "(none)"))
            on_policy = _column(batch, "on_policy", pa.string())
            stats.on_policy.update(_counts(on_policy, "(none)"))
            methods, sources = _flat_field(batch, "method"), _flat_field(batch, "source")
            stats.methods.update(_counts(methods, "(none)"))
            stats.sources.update(_counts(sources, "(none)"))
            stats.no_image_reasons.update(_counts(_flat_field(batch, "reason")))
            n_clean = _as_np(pc.list_value_length(_column(batch, "images", pa.list_(pa.null()))), np.int64)
            n_bad = _as_np(pc.list_value_length(_column(batch, "corrupted_images", pa.list_(pa.null()))), np.int64)
            stats.images.update({"clean and corrupted": int(((n_clean > 0) & (n_bad > 0)).sum()),
                                 "clean only": int(((n_clean > 0) & (n_bad == 0)).sum()),
                                 "text only": int((n_clean == 0).sum())})

            types = batch.column("error_types")
            flat_types = pc.list_flatten(types)
            parents = _as_np(pc.list_parent_indices(types), np.int64)
            pair_types = set(zip(parents.tolist(), flat_types.to_pylist(), strict=True))
            stats.pairs_by_error.update(t for _, t in pair_types if t is not None)
            edits = batch.column("edits")
            stats.edits_by_error.update(_counts(pc.list_flatten(edits).field("error_type"), "(none)"))
            stats.edits_per_pair.update(Counter(np.minimum(_as_np(pc.list_value_length(edits), np.int64),
                                                           10).tolist()))
            stats.edit_ratio_hist += _histogram(edit_ratios(batch))
            fractions = _as_np(_flat_field(batch, "mask_fraction").drop_null(), np.float64)
            fractions = fractions[np.isfinite(fractions)]
            stats.with_mask_fraction += len(fractions)
            stats.mask_fraction_hist += _histogram(fractions)

            sampler.uniform.offer(keys, rows)
            sampler.offer_class("task", _as_np_obj(batch.column("task")), keys, rows)
            sampler.offer_class("on_policy", _as_np_obj(on_policy), keys, rows)
            sampler.offer_class("source", _as_np_obj(sources), keys, rows)
            type_names = np.asarray(flat_types.to_pylist(), dtype=object)
            for etype in {t for t in type_names.tolist() if t is not None}:
                res = sampler.reservoir("error_type", str(etype))
                if res is not None:
                    hit = np.unique(parents[type_names == etype])
                    res.offer(keys[hit], rows[hit])
    return stats, sampler


def _as_np_obj(arr: pa.Array) -> np.ndarray:
    return np.asarray(arr.to_pylist(), dtype=object)


@dataclass
class RejectStats:
    rejects: int = 0
    reasons: Counter = field(default_factory=Counter)
    stages: Counter = field(default_factory=Counter)
    rows: list[dict] = field(default_factory=list)


REJECT_COLUMNS = ["sample_id", "response_index", "stage", "reason", "detail"]


def scan_rejects(path: Path | None, options: ReportOptions) -> RejectStats:
    """Counts by reason and stage over every reject row, and a sample of rows (a few of each reason)."""
    out = RejectStats()
    if path is None:
        return out
    pf = pq.ParquetFile(path, pre_buffer=False)
    names = [c for c in REJECT_COLUMNS if c in pf.schema_arrow.names]
    sampler = StrataSampler(options.rejects_sample, options.per_class)
    start = 0
    for batch in pf.iter_batches(batch_size=options.batch_size, columns=["reason", "stage"]):
        n = batch.num_rows
        out.reasons.update(_counts(batch.column("reason"), "(none)"))
        out.stages.update(_counts(batch.column("stage"), "(none)"))
        keys, rows = row_keys(start, n, options.seed + 1), np.arange(start, start + n, dtype=np.int64)
        sampler.uniform.offer(keys, rows)
        sampler.offer_class("reason", _as_np_obj(batch.column("reason")), keys, rows)
        start += n
    out.rejects = start
    chosen = sampler.chosen()
    picked: list[tuple[int, dict]] = []
    start = 0
    for batch in pf.iter_batches(batch_size=options.batch_size, columns=names):
        local = [r - start for r in range(start, start + batch.num_rows) if r in chosen]
        if local:
            for r, row in zip(local, batch.take(pa.array(local, pa.int64())).to_pylist(), strict=True):
                row["detail"] = cap_text(row.get("detail") or "", MAX_META)
                picked.append((chosen[r + start][0], row))
        start += batch.num_rows
    out.rows = [row for _, row in sorted(picked, key=lambda kr: kr[0])]
    return out
