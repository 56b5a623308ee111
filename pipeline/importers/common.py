"""Helpers every importer shares: finding the source file, reading it, placing images, building a record.

Importers stay short by leaving these chores here; each one only maps its dataset's fields onto the
manifest record of CONTRACT.md section 1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

DEFAULT_REPORT_PROMPT = "Describe the findings in this chest X-ray."


def resolve_source(source: Path, default_names: Iterable[str], fmt: str) -> Path:
    """Accept either the dataset file itself or the folder holding it (first of ``default_names``)."""
    source = Path(source)
    if source.is_dir():
        names = list(default_names)
        for name in names:
            if (source / name).is_file():
                return source / name
        raise FileNotFoundError(f"{fmt}: folder {source} holds none of {', '.join(names)}")
    if not source.is_file():
        raise FileNotFoundError(f"{fmt}: source {source} does not exist")
    return source


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Stream the objects of a JSON Lines file; a bad line raises naming the file and line."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: invalid JSON: {e.msg}") from e
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{line_no}: expected a JSON object")
            yield obj


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: invalid JSON: {e.msg} at line {e.lineno}") from e


def text(value: Any) -> str:
    """A raw field as stripped text; None becomes ''."""
    return "" if value is None else str(value).strip()


class ImagePaths:
    """Where images are looked up and how their paths are written into the manifest.

    ``images_dir`` (the --images-dir flag) overrides the dataset's own image folder. Paths are written
    relative to ``manifest_dir`` when the image lies under it, else absolute, so a manifest keeps
    working when its folder is moved together with its images.
    """

    def __init__(self, images_dir: Path | None = None, manifest_dir: Path | None = None):
        self.images_dir = Path(images_dir) if images_dir is not None else None
        self.manifest_dir = Path(manifest_dir) if manifest_dir is not None else None

    def ref(self, path: Path) -> str:
        """The manifest string for an image path."""
        absolute = Path(os.path.abspath(path))
        if self.manifest_dir is not None:
            base = Path(os.path.abspath(self.manifest_dir))
            if absolute.is_relative_to(base):
                return absolute.relative_to(base).as_posix()
        return str(absolute)

    def beside_manifest(self, relative: str) -> str:
        """A path meant to be relative to the manifest's folder (images the user must supply there)."""
        if self.manifest_dir is None:
            return Path(relative).as_posix()
        return self.ref(self.manifest_dir / relative)

    def in_images_dir(self, *names: str) -> Path | None:
        """The first of ``names`` that exists under --images-dir, else the first one; None without the flag."""
        if self.images_dir is None or not names:
            return None
        candidates = [self.images_dir / n for n in names]
        return next((c for c in candidates if c.is_file()), candidates[0])


def first_existing(candidates: Iterable[Path]) -> Path:
    """The first candidate that is a file, else the first candidate (the pipeline then rejects it)."""
    candidates = list(candidates)
    return next((c for c in candidates if c.is_file()), candidates[0])


def make_record(
    sample_id: str,
    task: str,
    prompt: str,
    reference: str,
    *,
    images: Iterable[str] = (),
    responses: list[str] | None = None,
    lesions: Iterable[dict[str, Any]] = (),
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A manifest record with the optional keys left out when they carry nothing."""
    record: dict[str, Any] = {
        "sample_id": sample_id,
        "task": task,
        "prompt": prompt,
        "images": list(images),
        "reference": reference,
    }
    if responses is not None:
        record["responses"] = responses
    lesions = list(lesions)
    if lesions:
        record["lesions"] = lesions
    record["meta"] = meta or {}
    return record


def xywh_to_xyxy(x: float, y: float, w: float, h: float) -> list[float]:
    """COCO / NIH ``[x, y, w, h]`` (top-left corner, size) to the contract's ``[x1, y1, x2, y2]``."""
    return [float(x), float(y), float(x) + float(w), float(y) + float(h)]
