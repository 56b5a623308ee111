"""IU X-Ray (OpenI) importers: model generations, the OpenI XML reports, R2Gen and ReXrank layouts.

No IU images are shipped in shared/data, so records are text-only unless --images-dir holds them.
Every layout names files differently (``CXR2_IM-0652-1001.png`` flat, ``CXR3030_IM-1405/0.png`` in a
study folder), so the images folder is indexed once by IU uid and used when the expected names miss.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import (
    DEFAULT_REPORT_PROMPT,
    ImagePaths,
    make_record,
    read_json,
    read_jsonl,
    resolve_source,
    text,
)

log = logging.getLogger(__name__)

IMAGES_NOTE = "IU X-ray images not shipped; text-only"
_UID = re.compile(r"CXR(\d+)_")
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


class IUImages:
    """Finds a study's images under --images-dir: by expected file names, else by IU uid."""

    def __init__(self, paths: ImagePaths):
        self.paths = paths
        self._by_uid: dict[int, list[Path]] | None = None

    def _index(self) -> dict[int, list[Path]]:
        if self._by_uid is None:
            self._by_uid = {}
            root = self.paths.images_dir
            if root is not None and root.is_dir():
                for p in sorted(root.rglob("*")):
                    m = _UID.search(p.relative_to(root).as_posix())
                    if m and p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file():
                        self._by_uid.setdefault(int(m.group(1)), []).append(p)
        return self._by_uid

    def find(self, uid: int, expected: list[str]) -> list[str]:
        """Manifest paths of the study's images; [] without --images-dir or when nothing is known."""
        root = self.paths.images_dir
        if root is None:
            return []
        wanted = [root / name for name in expected]
        found = [p for p in wanted if p.is_file()] or self._index().get(uid, []) or wanted
        return [self.paths.ref(p) for p in found]


def _with_note(images: list[str], meta: dict[str, Any]) -> dict[str, Any]:
    if not images:
        meta["images_note"] = IMAGES_NOTE
    return meta


def _uid_of(study_id: str) -> int | None:
    m = _UID.match(study_id + "_")
    return int(m.group(1)) if m else None


def import_iu_generations(source: Path, paths: ImagePaths) -> Iterator[dict[str, Any]]:
    """Generated IU reports replayed as on-policy responses against the original-casing reference."""
    path = resolve_source(source, ["generations.jsonl"], "iu-generations")
    images = IUImages(paths)
    for row in read_jsonl(path):
        rid = text(row.get("id")) or text(row.get("uid"))
        uid = text(row.get("uid")) or rid
        found = images.find(int(uid), []) if uid.isdigit() else []
        meta = {k: v for k, v in row.items() if k not in {"id", "generated_report", "reference_report"}}
        yield make_record(
            f"iu-{rid}", "report", DEFAULT_REPORT_PROMPT, text(row.get("reference_report")),
            images=found, responses=[text(row.get("generated_report"))],
            meta=_with_note(found, {"dataset": "iu_xray", **meta}),
        )


def import_openi(source: Path, paths: ImagePaths) -> Iterator[dict[str, Any]]:
    """OpenI XML reports: reference = findings + impression; responses are left to the sampler."""
    path = resolve_source(source, ["reports.jsonl"], "openi")
    images = IUImages(paths)
    skipped = 0
    for row in read_jsonl(path):
        reference = " ".join(t for t in (text(row.get("findings")), text(row.get("impression"))) if t)
        if not reference:
            skipped += 1
            continue
        uid = int(row["uid"])
        image_info = row.get("images") or []
        found = images.find(uid, [f"{im['image_id']}.png" for im in image_info]) if image_info else []
        meta = {k: v for k, v in row.items() if k not in {"uid", "images"}}
        meta["image_info"] = image_info
        yield make_record(
            f"openi-{uid}", "report", DEFAULT_REPORT_PROMPT, reference, images=found,
            meta=_with_note(found, {"dataset": "iu_xray", "uid": uid, **meta}),
        )
    if skipped:
        log.warning("openi: skipped %d reports with neither findings nor impression", skipped)


def import_r2gen(source: Path, paths: ImagePaths) -> Iterator[dict[str, Any]]:
    """R2Gen ``annotation.json``: every split, the split kept in meta."""
    path = resolve_source(source, ["annotation.json"], "r2gen")
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object keyed by split")
    images = IUImages(paths)
    for split, entries in data.items():
        for entry in entries:
            rid = text(entry.get("id"))
            reference = text(entry.get("report"))
            if not reference:
                log.warning("r2gen: skipped %s/%s with an empty report", split, rid)
                continue
            found = images.find(int(rid), list(entry.get("image_path") or [])) if rid.isdigit() else []
            meta = {k: v for k, v in entry.items() if k not in {"id", "report"}}
            yield make_record(
                f"r2gen-{rid}", "report", DEFAULT_REPORT_PROMPT, reference, images=found,
                meta=_with_note(found, {"dataset": "iu_xray", "split": split, "uid": rid, **meta}),
            )


def import_rexrank(source: Path, paths: ImagePaths) -> Iterator[dict[str, Any]]:
    """ReXrank IU studies: reference = findings section + impression section (whole report as fallback)."""
    source = Path(source)
    files = sorted(source.glob("*.json")) if source.is_dir() else [resolve_source(source, [], "rexrank")]
    if not files:
        raise FileNotFoundError(f"rexrank: folder {source} holds no *.json file")
    images = IUImages(paths)
    for path in files:
        data = read_json(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected an object keyed by study id")
        for study_id, study in data.items():
            sections = [text(study.get("section_findings")), text(study.get("section_impression"))]
            reference = " ".join(s for s in sections if s) or text(study.get("report"))
            if not reference:
                log.warning("rexrank: skipped %s with no report text", study_id)
                continue
            uid = _uid_of(study_id)
            expected = list(study.get("image_path") or [])
            found = images.find(uid, expected) if uid is not None else []
            meta = {k: v for k, v in study.items() if k not in {"section_findings", "section_impression"}}
            yield make_record(
                f"rexrank-{study_id}", "report", DEFAULT_REPORT_PROMPT, reference, images=found,
                meta=_with_note(found, {"dataset": "iu_xray", "study_id": study_id, "uid": uid,
                                        "source_file": path.name, **meta}),
            )
