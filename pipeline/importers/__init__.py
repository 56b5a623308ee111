"""Dataset importers: turn each shared dataset layout into sample-manifest records (CONTRACT.md section 1).

``FORMATS`` is the registry by name used by ``build-pairs import FORMAT SOURCE``; a new layout is one
function matching ``Importer`` added there. ``import_samples`` validates every record it yields with
``schemas.sample.parse_sample`` so a manifest written here is always readable by ``run``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from schemas.sample import SampleError, parse_sample

from .common import ImagePaths
from .detection import import_chestx_det, import_coco
from .iu import import_iu_generations, import_openi, import_r2gen, import_rexrank
from .mimic import import_chexpert_plus, import_mimic_cxr
from .nih import import_nih_bbox, import_nih_reports
from .vqa import import_slake, import_vqa_rad

log = logging.getLogger(__name__)


class Importer(Protocol):
    """Reads one dataset layout at ``source`` (its file or its folder) and yields manifest records."""

    def __call__(self, source: Path, paths: ImagePaths) -> Iterator[dict[str, Any]]: ...


FORMATS: dict[str, Importer] = {
    "iu-generations": import_iu_generations,
    "openi": import_openi,
    "r2gen": import_r2gen,
    "rexrank": import_rexrank,
    "nih-reports": import_nih_reports,
    "vqa-rad": import_vqa_rad,
    "slake": import_slake,
    "coco": import_coco,
    "chestx-det": import_chestx_det,
    "nih-bbox": import_nih_bbox,
    "mimic-cxr": import_mimic_cxr,
    "chexpert-plus": import_chexpert_plus,
}


def import_samples(
    fmt: str, source: Path, images_dir: Path | None = None, manifest_dir: Path | None = None
) -> Iterator[dict]:
    """Stream the manifest records of ``source`` read as format ``fmt``.

    Image paths are written relative to ``manifest_dir`` when the image lies under it, else absolute;
    ``images_dir`` overrides where images are looked up. Records without any reference text are skipped
    with a warning (nothing can be checked against them); any other invalid record is an importer error.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown import format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    importer = FORMATS[fmt]
    paths = ImagePaths(images_dir=images_dir, manifest_dir=manifest_dir)
    for record in importer(Path(source), paths):
        try:
            parse_sample(record)
        except SampleError as e:
            if e.reason == "missing_reference":
                log.warning("%s: skipped %s: %s", fmt, e.sample_id, e.detail)
                continue
            raise ValueError(f"{fmt}: {e}") from e
        yield record


def write_manifest(records: Iterable[dict], out: Path) -> int:
    """Write records as JSON Lines to ``out`` atomically (temp file in the same folder, then rename).

    A failure part-way leaves any previous ``out`` untouched and no temporary file behind.
    Returns the number of records written.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return count


__all__ = ["FORMATS", "Importer", "ImagePaths", "import_samples", "write_manifest"]
