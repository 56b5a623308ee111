"""Streaming the sample manifest: bounded lines, one pre-pass for the run key and duplicate ids, and
the per-partition reader.

Memory stays flat whatever the manifest's size: lines are read one at a time and capped at
``MAX_LINE_BYTES`` (a longer line is skipped to its newline and becomes a ``line_too_long`` reject),
and duplicate detection keeps 16 bytes per line in numpy arrays instead of a set of id strings.

Partitions are taken by physical line index (``(line_no - 1) % world_size == rank``), so the split is
deterministic and needs no coordination. Duplicate ids are global: the first line that names an id
owns it, and every later line naming it is a ``duplicate_sample_id`` reject, whichever partition it
falls in. That is why the pre-pass (``scan_manifest``) runs once before the partitions start.
"""

from __future__ import annotations

import hashlib
import json
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from schemas.pair import RejectRecord
from schemas.sample import Sample, SampleError, parse_sample

MAX_LINE_BYTES = 64 * 1024 * 1024  # a manifest line longer than this is refused, not loaded
_BOM = b"\xef\xbb\xbf"


class ManifestError(RuntimeError):
    """The manifest cannot be read at all (missing, a folder, unreadable); one-line message."""


@dataclass
class ManifestItem:
    """One non-blank manifest line: a parsed sample, or the reject row saying why it is not one."""

    line_no: int
    sample: Sample | None = None
    reject: RejectRecord | None = None


@dataclass
class ManifestScan:
    """What the pre-pass learns: the file's sha256 (the run key), its line counts, and the duplicate
    lines (line number -> the earlier line that owns the id)."""

    sha256: str
    lines: int
    items: int
    duplicates: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0


def open_manifest(path: str | Path) -> BinaryIO:
    path = Path(path)
    if path.is_dir():
        raise ManifestError(f"cannot read manifest {str(path)!r}: it is a folder")
    try:
        return open(path, "rb")
    except OSError as e:
        raise ManifestError(f"cannot read manifest {str(path)!r}: {e.strerror or e}") from e


def iter_lines(f: BinaryIO, max_line_bytes: int | None = None,
               on_bytes: Callable[[bytes], None] | None = None) -> Iterator[tuple[int, bytes | None]]:
    """``(line_no, content)`` for every physical line (1-based), without the line break and the UTF-8
    byte-order mark; ``content`` is None for a line over ``max_line_bytes`` (read past, never held).
    ``on_bytes`` sees every byte of the file, in order (for hashing). ``max_line_bytes``: None is
    ``MAX_LINE_BYTES``."""
    max_line_bytes = max_line_bytes or MAX_LINE_BYTES
    line_no = 0
    while True:
        raw = f.readline(max_line_bytes + 1)
        if not raw:
            return
        if on_bytes is not None:
            on_bytes(raw)
        line_no += 1
        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            while True:  # skip the rest of the over-long line in bounded pieces
                more = f.readline(1 << 20)
                if on_bytes is not None and more:
                    on_bytes(more)
                if not more or more.endswith(b"\n"):
                    break
            yield line_no, None
            continue
        if line_no == 1:
            raw = raw.removeprefix(_BOM)
        yield line_no, raw.rstrip(b"\r\n")


def sample_id_of(raw: bytes) -> str | None:
    """The id ``parse_sample`` would give this line, or None for a line that has none (not JSON,
    not UTF-8, no usable ``sample_id``)."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
        return None
    sid = obj.get("sample_id") if isinstance(obj, dict) else None
    return sid if isinstance(sid, str) and sid.strip() else None


def _id_hash(sid: str) -> int:
    return int.from_bytes(hashlib.blake2b(sid.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def scan_manifest(path: str | Path, max_line_bytes: int | None = None) -> ManifestScan:
    """One streaming pass: sha256 of the bytes, line counts, and the duplicate-id lines.

    Ids are kept as 64-bit hashes (16 bytes a line with the line number); lines whose hashes collide
    are re-read and compared by their real ids in a second pass over just those lines, so a hash
    collision can never make a unique id a duplicate."""
    start = time.perf_counter()
    digest = hashlib.sha256()
    hashes, line_nos = array("Q"), array("Q")
    lines = items = 0
    with open_manifest(path) as f:
        try:
            for line_no, raw in iter_lines(f, max_line_bytes, digest.update):
                lines = line_no
                if raw is not None and not raw.strip():
                    continue
                items += 1
                sid = sample_id_of(raw) if raw is not None else None
                if sid is not None:
                    hashes.append(_id_hash(sid))
                    line_nos.append(line_no)
        except OSError as e:
            raise ManifestError(f"cannot read manifest {str(path)!r}: {e.strerror or e}") from e
    duplicates = _duplicate_lines(path, np.frombuffer(hashes, dtype=np.uint64),
                                  np.frombuffer(line_nos, dtype=np.uint64), max_line_bytes)
    return ManifestScan(digest.hexdigest(), lines, items, duplicates, time.perf_counter() - start)


def _duplicate_lines(path, hashes: np.ndarray, line_nos: np.ndarray, max_line_bytes: int | None) -> dict[int, int]:
    if len(hashes) < 2:
        return {}
    order = np.lexsort((line_nos, hashes))
    h = hashes[order]
    same = h[1:] == h[:-1]
    if not same.any():
        return {}
    in_group = np.zeros(len(h), dtype=bool)
    in_group[1:] |= same
    in_group[:-1] |= same
    candidates = {int(n) for n in line_nos[order][in_group]}
    first: dict[str, int] = {}
    duplicates: dict[int, int] = {}
    with open_manifest(path) as f:
        for line_no, raw in iter_lines(f, max_line_bytes):
            if line_no not in candidates or raw is None:
                continue
            sid = sample_id_of(raw)
            if sid in first:
                duplicates[line_no] = first[sid]
            else:
                first[sid] = line_no
    return duplicates


def in_partition(line_no: int, rank: int, world_size: int) -> bool:
    return (line_no - 1) % world_size == rank


def read_manifest(path: str | Path, rank: int = 0, world_size: int = 1, duplicates: dict[int, int] | None = None,
                  start_after: int = 0, max_line_bytes: int | None = None) -> Iterator[ManifestItem]:
    """Stream this partition's lines after line ``start_after`` as items; a bad line is a reject item.

    ``duplicates`` comes from ``scan_manifest`` (None: scan here first)."""
    max_line_bytes = max_line_bytes or MAX_LINE_BYTES
    if duplicates is None:
        duplicates = scan_manifest(path, max_line_bytes).duplicates
    with open_manifest(path) as f:
        for line_no, raw in iter_lines(f, max_line_bytes):
            if line_no <= start_after or not in_partition(line_no, rank, world_size):
                continue
            if raw is None:
                detail = f"line {line_no}: field '<line>': longer than {max_line_bytes} bytes; not read"
                yield ManifestItem(line_no, reject=RejectRecord(f"line-{line_no}", "parse", "line_too_long",
                                                                detail, -1))
                continue
            if not raw.strip():
                continue
            try:
                sample = parse_sample(raw, line_no)
            except SampleError as e:
                detail = f"line {line_no}: field {e.field!r}: {e.detail}"
                yield ManifestItem(line_no, reject=RejectRecord(e.sample_id, "parse", e.reason, detail, -1))
                continue
            owner = duplicates.get(line_no)
            if owner is not None:
                detail = (f"line {line_no}: field 'sample_id': duplicate of line {owner}'s id {sample.sample_id!r}; "
                          "the first line with an id owns it")
                yield ManifestItem(line_no, reject=RejectRecord(sample.sample_id, "parse", "duplicate_sample_id",
                                                                detail, -1))
                continue
            yield ManifestItem(line_no, sample=sample)
