"""``build-pairs report``: one self-contained HTML page to look at a finished run.

The page must open fast for a 100k-pair folder and stay small, so it never holds every pair:
aggregate figures (counts, edit-ratio and mask-fraction histograms, corruption sources) are computed
over all pairs by streaming only the small columns through pyarrow, batch by batch, while a seeded
sample of pair cards is chosen in the same pass (a uniform sample, plus a few pairs of every error
type, task and corruption source so rare classes can still be filtered to). Only the chosen rows'
texts and images are then read, and images become small JPEG thumbnails with the mask outlined.

Every text from the data reaches the page either through ``html.escape`` (the summary) or as JSON
that the script puts into the DOM with ``textContent`` (the cards), never as markup; a Content
Security Policy with a per-file nonce blocks any script or network request the page did not ship.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import secrets
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.pair import ERROR_TYPES

MANIFEST = "manifest.json"
REJECTS = "rejects.parquet"
FINE_BINS = 200  # histogram resolution while streaming (the page shows 20 bins; medians use these)
SHOWN_BINS = 20
MAX_TEXT = 6000  # characters of one text field kept on a card (the file size bound needs a cap)
MAX_META = 1500
MAX_IMAGES_PER_CARD = 2
MAX_CARD_BYTES = 16_000_000  # all cards together, as JSON: the page stays under 20 MB whatever the data

# Columns read for every pair: small ones only (no images, masks, token ids, prompt or reference).
IMAGE_PATHS = ["images.list.element.path", "corrupted_images.list.element.path"]  # list lengths, no bytes
STAT_COLUMNS = ["task", "on_policy", "chosen", "rejected", "edits", "error_types", *IMAGE_PATHS,
                "corruption.method", "corruption.mask_fraction", "corruption.source", "corruption.reason"]
# Columns read for the sampled pairs only.
CARD_COLUMNS = ["pair_id", "sample_id", "task", "prompt", "chosen", "rejected", "on_policy", "reference",
                "edits", "error_types", "meta", "corruption.method", "corruption.mask_fraction",
                "corruption.source", "corruption.reason", "corruption.regions", "corruption.seed", *IMAGE_PATHS]
IMAGE_COLUMNS = ["images", "corrupted_images", "corruption.masks"]
REQUIRED_COLUMNS = ["pair_id", "sample_id", "task", "prompt", "chosen", "rejected", "edits", "error_types"]

ERROR_TYPE_HELP = {
    "false_finding": "the response reports a finding the reference does not have",
    "missed_finding": "the response omits or denies a finding the reference reports",
    "wrong_location": "the finding is placed at the wrong site or side",
    "wrong_severity": "the finding's severity or size is misstated",
    "false_comparison": "the response claims a change against a prior study that the reference does not",
    "missed_comparison": "the response omits a change against a prior study that the reference states",
    "wrong_answer": "the answer to the question is wrong",
}


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


@dataclass
class ReportResult:
    path: Path
    bytes: int
    pairs: int
    rejects: int
    cards: int
    seconds: float
    dropped: int = 0  # sampled cards left out to keep the page within MAX_CARD_BYTES


def within_budget(cards: list[dict], budget: int = MAX_CARD_BYTES) -> tuple[list[dict], int]:
    """The cards, in order, until their JSON reaches ``budget`` bytes (uniform-sample cards first, so
    the kept ones are still a uniform sample); returns them and how many were dropped."""
    kept, used = [], 0
    for card in sorted(cards, key=lambda c: not c.get("uniform")):
        size = len(json.dumps(card, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        if used + size > budget:
            continue
        kept.append(card)
        used += size
    order = {id(c): i for i, c in enumerate(cards)}
    return sorted(kept, key=lambda c: order[id(c)]), len(cards) - len(kept)


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


def _columns(pf: pq.ParquetFile, wanted: list[str], path: Path) -> list[str]:
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
        for batch in pf.iter_batches(batch_size=options.batch_size, columns=_columns(pf, STAT_COLUMNS, shard)):
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
                row["detail"] = _cap(row.get("detail") or "", MAX_META)
                picked.append((chosen[r + start][0], row))
        start += batch.num_rows
    out.rows = [row for _, row in sorted(picked, key=lambda kr: kr[0])]
    return out


# ---------------------------------------------------------------- pair cards


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f" … [{len(text) - limit} more characters]"


def diff_segments(rejected: str, chosen: str, edits: list[dict]) -> tuple[list[list], bool]:
    """The pair as one unified diff: ``[kind, text, edit_index]`` with kind 0 = shared text, 1 = only in
    ``rejected`` (removed), 2 = only in ``chosen`` (inserted). Offsets are Python character offsets,
    resolved here so the page never has to index strings (JavaScript counts UTF-16 units).
    ``ok`` is False when the edits do not describe ``rejected`` -> ``chosen`` (a finding in itself)."""
    order = sorted(range(len(edits)), key=lambda i: (edits[i]["rejected_start"], edits[i]["chosen_start"]))
    segs: list[list] = []
    ok, pos_r, pos_c = True, 0, 0
    for i in order:
        e = edits[i]
        rs, re_, cs, ce = (int(e[k] or 0) for k in ("rejected_start", "rejected_end", "chosen_start", "chosen_end"))
        if not (pos_r <= rs <= re_ <= len(rejected) and pos_c <= cs <= ce <= len(chosen)):
            return [[0, rejected, -1]], False
        shared = rejected[pos_r:rs]
        ok &= shared == chosen[pos_c:cs]
        ok &= rejected[rs:re_] == (e.get("before") or "") and chosen[cs:ce] == (e.get("after") or "")
        if shared:
            segs.append([0, shared, -1])
        if re_ > rs:
            segs.append([1, rejected[rs:re_], i])
        if ce > cs:
            segs.append([2, chosen[cs:ce], i])
        pos_r, pos_c = re_, ce
    ok &= rejected[pos_r:] == chosen[pos_c:]
    if pos_r < len(rejected):
        segs.append([0, rejected[pos_r:], -1])
    return _cap_segments(segs, MAX_TEXT), ok


def _cap_segments(segs: list[list], limit: int) -> list[list]:
    out, used = [], 0
    for kind, text, idx in segs:
        if used + len(text) > limit:
            rest = sum(len(s[1]) for s in segs) - used
            out.append([kind, text[: max(0, limit - used)], idx])
            out.append([3, f" … [{rest - max(0, limit - used)} more characters]", -1])
            break
        out.append([kind, text, idx])
        used += len(text)
    return out


def _to_bgr(img: np.ndarray) -> np.ndarray:
    if img.dtype != np.uint8:
        img = cv2.convertScaleAbs(img, alpha=255.0 / max(1.0, float(img.max())))
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def thumbnail(png: bytes | None, size: int, mask_png: bytes | None = None,
              boxes: Iterable[Iterable[int]] = ()) -> str | None:
    """A JPEG data URI at most ``size`` px on its longer side, with the mask (or, without one, the
    corruption boxes) outlined in yellow; None when the bytes do not decode."""
    if not png:
        return None
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        return None
    h, w = img.shape[:2]
    scale = min(1.0, size / max(h, w))
    tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    thumb = _to_bgr(cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA) if scale < 1 else img).copy()
    mask = cv2.imdecode(np.frombuffer(mask_png, np.uint8), cv2.IMREAD_GRAYSCALE) if mask_png else None
    if mask is not None and mask.size:
        small = cv2.resize(mask, (tw, th), interpolation=cv2.INTER_AREA) >= 64
        contours, _ = cv2.findContours(small.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(thumb, contours, -1, (0, 230, 255), 1)
    else:
        for box in {tuple(int(v) for v in b) for b in boxes if b is not None and len(b) == 4}:
            x1, y1, x2, y2 = (round(v * scale) for v in box)
            cv2.rectangle(thumb, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), (0, 230, 255), 1)
    ok, jpg = cv2.imencode(".jpg", thumb, [cv2.IMWRITE_JPEG_QUALITY, 80, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                           cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])  # crisp outline colour
    return "data:image/jpeg;base64," + base64.b64encode(jpg.tobytes()).decode("ascii") if ok else None


def _locate(rows: Iterable[int], row_counts: list[list[int]]) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """Global row -> (shard, row group) -> [(local row, global row)]."""
    bounds, where = [], []
    start = 0
    for s, groups in enumerate(row_counts):
        for g, n in enumerate(groups):
            bounds.append(start)
            where.append((s, g))
            start += n
    out: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for r in sorted(rows):
        i = int(np.searchsorted(bounds, r, side="right")) - 1
        out.setdefault(where[i], []).append((r - bounds[i], r))
    return out


def _card(row: dict) -> dict:
    edits = row.get("edits") or []
    segs, ok = diff_segments(row.get("rejected") or "", row.get("chosen") or "", edits)
    corr = {k: row.get(f"corruption.{k}") for k in ("method", "mask_fraction", "source", "reason", "seed")}
    fraction = corr["mask_fraction"]
    corr["mask_fraction"] = round(float(fraction), 4) if fraction is not None and math.isfinite(fraction) else None
    if corr["seed"] is not None:
        corr["seed"] = str(corr["seed"])  # 64-bit seeds do not fit a JavaScript number
    return {
        "id": row.get("pair_id"), "sample": row.get("sample_id"), "task": row.get("task"),
        "on_policy": row.get("on_policy"), "prompt": _cap(row.get("prompt") or "", MAX_TEXT),
        "reference": _cap(row.get("reference") or "", MAX_TEXT),
        # the diff segments hold both texts; the raw texts only travel when the edits do not fit them
        "chosen": None if ok else _cap(row.get("chosen") or "", MAX_TEXT),
        "rejected": None if ok else _cap(row.get("rejected") or "", MAX_TEXT),
        "segs": segs, "edits_ok": ok,
        "edits": [[e.get("error_type"), e.get("before") or "", e.get("after") or ""] for e in edits],
        "types": list(dict.fromkeys(row.get("error_types") or [])),
        "corruption": corr, "meta": _cap(row.get("meta") or "", MAX_META), "images": [],
        "n_images": len(row.get("images") or []),
    }


def _flatten_struct(table: pa.Table) -> list[dict]:
    """Rows with ``corruption`` fields as ``corruption.<name>`` keys (as the column selection named them)."""
    rows = table.to_pylist()
    for row in rows:
        for k, v in (row.pop("corruption", None) or {}).items():
            row[f"corruption.{k}"] = v
    return rows


def build_cards(shards: list[Path], chosen: dict[int, tuple[int, bool]], thumb: int) -> list[dict]:
    """Read only the chosen rows: their texts from the row group, their images by streaming the row
    group's image columns a few rows at a time and stopping after the last chosen row with images.
    Thumbnails are made on a few threads (OpenCV releases the GIL), with a bounded queue."""
    row_counts = []
    for s in shards:
        meta = pq.ParquetFile(s).metadata
        row_counts.append([meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
    cards: list[tuple[int, dict]] = []
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        pending: deque[Future] = deque()
        for (s, g), wanted in _locate(chosen, row_counts).items():
            pf = pq.ParquetFile(shards[s], pre_buffer=False, buffer_size=1 << 20)
            cols = _columns(pf, CARD_COLUMNS, shards[s])
            local = [lr for lr, _ in wanted]
            rows = _flatten_struct(pf.read_row_group(g, columns=cols).take(pa.array(local, pa.int64())))
            by_local = {}
            for (lr, gr), row in zip(wanted, rows, strict=True):
                card = _card(row)
                card["uniform"] = chosen[gr][1]
                if row.get("images"):  # only rows with images make the image columns worth streaming
                    by_local[lr] = (card, row.get("corruption.regions") or [])
                cards.append((chosen[gr][0], card))
            image_cols = _columns(pf, IMAGE_COLUMNS, shards[s])
            if not (image_cols and by_local):
                continue
            for job in _image_jobs(pf, g, image_cols, by_local):
                pending.append(pool.submit(_fill_thumbnails, *job, thumb))
                while len(pending) > 16:
                    pending.popleft().result()
        for future in pending:
            future.result()
    return [card for _, card in sorted(cards, key=lambda kc: kc[0])]


def _image_jobs(pf: pq.ParquetFile, group: int, cols: list[str], by_local: dict) -> Iterator[tuple]:
    """(slot, clean PNG, corrupted PNG, mask PNG, boxes) per image of the wanted rows; the slot is the
    card's ``[clean thumbnail, corrupted thumbnail, path]`` entry, filled in later."""
    last, pos = max(by_local), 0
    for batch in pf.iter_batches(batch_size=4, row_groups=[group], columns=cols):
        for i in range(batch.num_rows):
            if pos + i not in by_local:
                continue
            card, regions = by_local[pos + i]
            row = _flatten_struct(pa.Table.from_batches([batch.slice(i, 1)]))[0]
            clean, bad = row.get("images") or [], row.get("corrupted_images") or []
            masks = row.get("corruption.masks") or []
            for j, ref in enumerate(clean[:MAX_IMAGES_PER_CARD]):
                slot = [None, None, (ref or {}).get("path") or ""]
                card["images"].append(slot)
                yield (slot, (ref or {}).get("bytes"), (bad[j] or {}).get("bytes") if j < len(bad) else None,
                       masks[j] if j < len(masks) else None, regions if j == 0 and not masks else ())
        pos += batch.num_rows
        if pos > last:
            return


def _fill_thumbnails(slot: list, clean: bytes | None, bad: bytes | None, mask: bytes | None, boxes, thumb: int):
    slot[0] = thumbnail(clean, thumb, mask, boxes)
    slot[1] = thumbnail(bad, thumb, mask, boxes) if bad else None


# ---------------------------------------------------------------- HTML


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _asset(name: str) -> str:
    return (resources.files("report") / "assets" / name).read_text(encoding="utf-8")


def _json_for_script(obj) -> str:
    """JSON that cannot end its ``<script>`` element or open a comment: every ``<``, ``>`` and ``&``
    is a ``\\u`` escape (JSON.parse restores them)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _bars(counter: Counter, key: str, order: Iterable[str] = (), color_by_type: bool = False,
          shares: bool = True) -> str:
    """A horizontal bar chart as an HTML table (labels escaped, widths relative to the largest)."""
    if not counter:
        return '<p class="empty">none</p>'
    names = [n for n in order if n in counter] + sorted((n for n in counter if n not in set(order)),
                                                        key=lambda n: (-counter[n], n))
    top = max(counter.values()) or 1
    total = sum(counter.values())
    rows = []
    for name in names:
        n = counter[name]
        cls = f' et-{_e(name)}' if color_by_type and name in ERROR_TYPES else ""
        tip = ERROR_TYPE_HELP.get(name, "") if color_by_type else ""
        rows.append(
            f'<tr title="{_e(tip)}"><th>{_e(name)}</th><td class="bar"><span class="fill{cls}" '
            f'style="width:{100 * n / top:.1f}%"></span></td>'
            f'<td class="num" data-stat="{_e(key)}" data-key="{_e(name)}">{n:,}</td>'
            + (f'<td class="pct">{100 * n / max(1, total):.1f}%</td>' if shares else "") + "</tr>")
    return f'<table class="bars">{"".join(rows)}</table>'


def _median(fine: np.ndarray) -> float | None:
    total = int(fine.sum())
    if total == 0:
        return None
    i = int(np.searchsorted(np.cumsum(fine), (total + 1) / 2))
    return (i + 0.5) / FINE_BINS


def _histogram_svg(fine: np.ndarray, label: str) -> str:
    """Counts in SHOWN_BINS bins over [0, 1] as an inline SVG (each bar's count in its tooltip)."""
    bins = fine.reshape(SHOWN_BINS, -1).sum(axis=1)
    total = int(bins.sum())
    if total == 0:
        return '<p class="empty">no values</p>'
    w, h, pad = 360, 120, 18
    top = int(bins.max())
    bw = w / SHOWN_BINS
    bars = []
    for i, n in enumerate(bins.tolist()):
        bh = (h - pad) * n / top
        lo, hi = i / SHOWN_BINS, (i + 1) / SHOWN_BINS
        bars.append(f'<rect x="{i * bw + 1:.1f}" y="{h - pad - bh:.1f}" width="{bw - 2:.1f}" height="{bh:.1f}">'
                    f"<title>{lo:.2f}–{hi:.2f}: {n:,}</title></rect>")
    ticks = "".join(f'<text x="{x * w:.0f}" y="{h - 4}" text-anchor="{a}">{x:g}</text>'
                    for x, a in ((0, "start"), (0.5, "middle"), (1, "end")))
    med = _median(fine)
    note = f"n = {total:,}" + (f", median ≈ {med:.3f}" if med is not None else "")
    return (f'<svg class="hist" viewBox="0 0 {w} {h}" role="img" aria-label="{_e(label)}">{"".join(bars)}'
            f'{ticks}</svg><p class="note">{_e(note)}</p>')


def _panel(title: str, body: str, hint: str = "") -> str:
    hint_html = f'<p class="hint">{_e(hint)}</p>' if hint else ""
    return f'<div class="panel"><h3>{_e(title)}</h3>{hint_html}{body}</div>'


def render_html(run: RunFolder, stats: PairStats, rejects: RejectStats, cards: list[dict],
                options: ReportOptions, counted_pairs: int, dropped: int = 0) -> str:
    m = run.manifest
    counts = m.get("counts") or {}
    warnings = []
    if counts.get("pairs") is not None and counts.get("pairs") != counted_pairs:
        warnings.append(f"manifest says {counts.get('pairs')} pairs, the shards hold {counted_pairs}")
    if counts.get("rejects") is not None and counts.get("rejects") != rejects.rejects:
        warnings.append(f"manifest says {counts.get('rejects')} rejects, {REJECTS} holds {rejects.rejects}")
    if dropped:
        warnings.append(f"{dropped} sampled card(s) left out to keep the page under {MAX_CARD_BYTES / 1e6:.0f} MB")
    bad_edits = sum(1 for c in cards if not c["edits_ok"])
    if bad_edits:
        warnings.append(f"{bad_edits} sampled pair(s) have edits that do not turn rejected into chosen")

    count_cells = "".join(
        f'<div class="count"><span class="n" data-count="{k}">{_e(f"{counts[k]:,}" if isinstance(counts.get(k), int) else counts.get(k, "?"))}</span>'
        f'<span class="k">{k}</span></div>' for k in ("samples", "responses", "pairs", "rejects"))
    meta_line = " · ".join(_e(x) for x in (
        str(run.root.resolve()), f"pipeline {m.get('pipeline_version', '?')}",
        f"schema {m.get('schema_version', '?')}", f"tokenizer {m.get('tokenizer', '?')}",
        f"config {m.get('config_hash', '?')}", "generated " + datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")))
    edit_hist = {n if n < 10 else "10+": c for n, c in sorted(stats.edits_per_pair.items())}
    panels = [
        _panel("Error types (pairs)", _bars(stats.pairs_by_error, "pairs_by_error", ERROR_TYPES, True),
               "pairs with at least one edit of the type"),
        _panel("Error types (edits)", _bars(stats.edits_by_error, "edits_by_error", ERROR_TYPES, True)),
        _panel("Tasks", _bars(stats.tasks, "tasks")),
        _panel("On-policy side", _bars(stats.on_policy, "on_policy"),
               "rejected: the sampled response was corrected; chosen: an error was injected into it"),
        _panel("Edit ratio", _histogram_svg(stats.edit_ratio_hist, "edit ratio histogram"),
               "share of the longer response's characters the edits touch"),
        _panel("Edits per pair", _bars(Counter({str(k): v for k, v in edit_hist.items()}), "edits_per_pair",
                                       [str(k) for k in edit_hist])),
        _panel("Mask fraction", _histogram_svg(stats.mask_fraction_hist, "mask fraction histogram"),
               "share of the image the corruption covers"),
        _panel("Images", _bars(stats.images, "images", ["clean and corrupted", "clean only", "text only"])),
        _panel("Corruption sources", _bars(stats.sources, "sources")),
        _panel("Corruption methods", _bars(stats.methods, "methods")),
        _panel("Why no corrupted image", _bars(stats.no_image_reasons, "no_image_reasons")),
        _panel("Rejects by reason", _bars(rejects.reasons, "reject_reasons")),
        _panel("Rejects by stage", _bars(rejects.stages, "reject_stages")),
    ]
    seconds = (m.get("stats") or {}).get("seconds") or {}
    timing = ""
    if seconds:
        timing = _panel("Run time (s)", _bars(Counter({k: v for k, v in seconds.items()
                                                      if isinstance(v, int | float)}), "seconds",
                                         shares=False), "stage timings overlap (process includes its parts)")
    data = {
        "cards": cards, "rejects": rejects.rows,
        "error_types": list(ERROR_TYPES), "error_help": ERROR_TYPE_HELP,
        "totals": {"pairs": counted_pairs, "rejects": rejects.rejects,
                   "pairs_by_error": dict(stats.pairs_by_error), "tasks": dict(stats.tasks),
                   "reject_reasons": dict(rejects.reasons)},
        "options": {"sample": options.sample, "per_class": options.per_class, "seed": options.seed},
    }
    nonce = secrets.token_urlsafe(18)
    csp = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
           "base-uri 'none'; form-action 'none'")
    legend = "".join(f'<span class="chip et-{t}" title="{_e(ERROR_TYPE_HELP[t])}">{_e(t)}</span>'
                     for t in ERROR_TYPES)
    warn_html = "".join(f'<p class="warn">{_e(w)}</p>' for w in warnings)
    config = json.dumps(m.get("config") or {}, indent=2, sort_keys=True, default=str)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>medpref report · {_e(run.root.resolve().name)}</title>
<style>{_asset("report.css")}</style></head>
<body>
<header><h1>medpref pair report</h1><p class="sub">{meta_line}</p></header>
<section id="summary"><div class="counts">{count_cells}</div>{warn_html}
<div class="grid">{"".join(panels)}{timing}</div>
<details><summary>Run configuration</summary><pre>{_e(config)}</pre></details></section>
<section id="pairs"><h2>Pairs <span class="sub" id="pairs-note"></span></h2>
<div class="legend">{legend}<span class="chip del">removed from rejected</span><span class="chip ins">inserted in chosen</span></div>
<div class="controls">
<label>error type <select id="f-type"><option value="">all</option></select></label>
<label>task <select id="f-task"><option value="">all</option></select></label>
<label>on-policy <select id="f-policy"><option value="">all</option></select></label>
<label>images <select id="f-img"><option value="">all</option><option value="yes">with images</option><option value="no">text only</option></select></label>
<label><input type="checkbox" id="f-uniform"> uniform sample only</label>
<label>search <input type="search" id="f-text" placeholder="id or text"></label>
<label>view <select id="f-view"><option value="diff">diff</option><option value="side">side by side</option></select></label>
</div>
<div class="pager" id="pager-top"></div><div id="cards"><noscript>The pair cards need JavaScript.</noscript></div>
<div class="pager" id="pager-bottom"></div></section>
<section id="rejects"><h2>Rejects <span class="sub" id="rejects-note"></span></h2>
<div class="controls"><label>reason <select id="f-reason"><option value="">all</option></select></label></div>
<table class="rejects"><thead><tr><th>sample</th><th>response</th><th>stage</th><th>reason</th><th>detail</th></tr></thead>
<tbody id="reject-rows"></tbody></table><div class="pager" id="pager-rejects"></div></section>
<script id="report-data" type="application/json">{_json_for_script(data)}</script>
<script nonce="{nonce}">{_asset("report.js")}</script>
</body></html>
"""


# ---------------------------------------------------------------- entry point


def write_report(out_dir: str | Path, dest: str | Path | None = None,
                 options: ReportOptions | None = None) -> ReportResult:
    """Write the HTML report of the run in ``out_dir`` to ``dest`` (default ``OUT_DIR/report.html``)."""
    t0 = time.perf_counter()
    options = options or ReportOptions()
    if options.sample < 0 or options.per_class < 0 or options.thumb < 16:
        raise ReportError("sample and per-class counts must be >= 0 and the thumbnail size >= 16 px")
    run = open_run(out_dir)
    dest = Path(dest) if dest is not None else run.root / "report.html"
    try:
        counted = sum(pq.ParquetFile(s).metadata.num_rows for s in run.shards)
        stats, sampler = scan_pairs(run.shards, options)
        rejects = scan_rejects(run.rejects, options)
        cards, dropped = within_budget(build_cards(run.shards, sampler.chosen(), options.thumb))
    except (pa.ArrowException, OSError, KeyError) as e:
        raise ReportError(f"{run.root}: cannot read the run: {' '.join(str(e).split())}") from e
    page = render_html(run, stats, rejects, cards, options, counted, dropped)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(dest)
    return ReportResult(dest, dest.stat().st_size, stats.pairs, rejects.rejects, len(cards),
                        time.perf_counter() - t0, dropped)

