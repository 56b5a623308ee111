"""The report's pair cards: only the sampled rows' texts and images are read, texts are capped and diffed
into segments, images become small JPEG thumbnails with the mask outlined, and the cards together stay
within ``MAX_CARD_BYTES``."""


from __future__ import annotations

import base64
import json
import math
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from report.data import IMAGE_PATHS, MAX_META, MAX_TEXT, cap_text, columns_present

MAX_IMAGES_PER_CARD = 2
MAX_CARD_BYTES = 16_000_000  # all cards together, as JSON: the page stays under 20 MB whatever the data
# Columns read for the sampled pairs only.
CARD_COLUMNS = ["pair_id", "sample_id", "task", "prompt", "chosen", "rejected", "on_policy", "reference",
                "edits", "error_types", "meta", "corruption.method", "corruption.mask_fraction",
                "corruption.source", "corruption.reason", "corruption.regions", "corruption.seed", *IMAGE_PATHS]
IMAGE_COLUMNS = ["images", "corrupted_images", "corruption.masks"]


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


# ---------------------------------------------------------------- pair cards


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
        "on_policy": row.get("on_policy"), "prompt": cap_text(row.get("prompt") or "", MAX_TEXT),
        "reference": cap_text(row.get("reference") or "", MAX_TEXT),
        # the diff segments hold both texts; the raw texts only travel when the edits do not fit them
        "chosen": None if ok else cap_text(row.get("chosen") or "", MAX_TEXT),
        "rejected": None if ok else cap_text(row.get("rejected") or "", MAX_TEXT),
        "segs": segs, "edits_ok": ok,
        "edits": [[e.get("error_type"), e.get("before") or "", e.get("after") or ""] for e in edits],
        "types": list(dict.fromkeys(row.get("error_types") or [])),
        "corruption": corr, "meta": cap_text(row.get("meta") or "", MAX_META), "images": [],
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
            cols = columns_present(pf, CARD_COLUMNS, shards[s])
            local = [lr for lr, _ in wanted]
            rows = _flatten_struct(pf.read_row_group(g, columns=cols).take(pa.array(local, pa.int64())))
            by_local = {}
            for (lr, gr), row in zip(wanted, rows, strict=True):
                card = _card(row)
                card["uniform"] = chosen[gr][1]
                if row.get("images"):  # only rows with images make the image columns worth streaming
                    by_local[lr] = (card, row.get("corruption.regions") or [])
                cards.append((chosen[gr][0], card))
            image_cols = columns_present(pf, IMAGE_COLUMNS, shards[s])
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
