"""``build-pairs gallery``: look at what the corruptors did, as clean | mask | corrupted PNG strips.

Reads the Parquet shards of a run (only the image columns, batch by batch, so a large run is not
loaded at once) and writes one strip per image of each pair that has a corrupted version. The middle
panel is the clean image with the mask tinted red, so the region can be judged against the anatomy.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq

from corruptors.png import decode_png, encode_png

_COLUMNS = ["pair_id", "sample_id", "images", "corrupted_images", "corruption"]


def _rgb(a: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(a, cv2.COLOR_GRAY2RGB) if a.ndim == 2 else a


def _fit_height(a: np.ndarray, height: int) -> np.ndarray:
    h, w = a.shape[:2]
    return cv2.resize(a, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)


def gallery_strip(
    clean: np.ndarray, mask: np.ndarray | None, corrupted: np.ndarray, height: int = 384
) -> np.ndarray:
    """One RGB strip: clean | clean with the mask tinted red | corrupted, each ``height`` pixels tall."""
    c = _rgb(clean)
    tinted = c.copy()
    if mask is not None and mask.shape == c.shape[:2]:
        red = np.zeros_like(c)
        red[..., 0] = 255
        m = mask > 0
        tinted[m] = (0.55 * c[m] + 0.45 * red[m]).astype(np.uint8)
    gap = np.full((height, 6, 3), 255, np.uint8)
    panels = [_fit_height(p, height) for p in (c, tinted, _rgb(corrupted))]
    return np.hstack([panels[0], gap, panels[1], gap, panels[2]])


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80] or "pair"


def write_gallery(shard_dir: Path, out_dir: Path, limit: int = 24, height: int = 384) -> list[Path]:
    """Write up to ``limit`` strips from ``shard_dir/shard-*.parquet`` into ``out_dir``; return their paths."""
    shard_dir, out_dir = Path(shard_dir), Path(out_dir)
    shards = sorted(shard_dir.glob("shard-*.parquet"))
    if not shards:
        raise FileNotFoundError(f"no shard-*.parquet files in {shard_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for shard in shards:
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=16, columns=_COLUMNS):
            for row in batch.to_pylist():
                corrupted = row["corrupted_images"] or []
                masks = (row["corruption"] or {}).get("masks") or []
                for i, (clean_ref, bad_ref) in enumerate(zip(row["images"] or [], corrupted, strict=False)):
                    if len(written) >= limit:
                        return written
                    mask = decode_png(masks[i]) if i < len(masks) and masks[i] else None
                    strip = gallery_strip(
                        decode_png(clean_ref["bytes"]), mask, decode_png(bad_ref["bytes"]), height
                    )
                    path = (
                        out_dir
                        / f"{len(written):04d}-{_safe(row['sample_id'])}-{_safe(row['pair_id'])[:12]}-{i}.png"
                    )
                    path.write_bytes(encode_png(strip))
                    written.append(path)
    return written
