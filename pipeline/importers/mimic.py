"""Importers for the credentialed layouts hospitals and labs hold: MIMIC-CXR and CheXpert Plus.

Why here: these datasets cannot be shipped or downloaded, but users have them on disk in fixed
layouts, and ``build-pairs import`` should read them as they are.

- ``mimic-cxr``: the free-text reports ``files/pXX/pXXXXXXXX/sXXXXXXXX.txt`` (FINAL REPORT with
  FINDINGS / IMPRESSION sections), and, when present, the MIMIC-CXR-JPG images
  ``files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg`` with ``mimic-cxr-2.0.0-metadata.csv`` (view
  positions) and ``mimic-cxr-2.0.0-split.csv``. One sample per study; the reference is FINDINGS +
  IMPRESSION; the images are the study's frontal views (PA/AP) when the metadata names them, else all
  of its JPEGs. ``--images-dir`` is the JPG root when it is not beside the reports.
- ``chexpert-plus``: the CheXpert Plus CSV (``df_chexpert_plus_*.csv``: ``path_to_image``,
  ``section_findings``, ``section_impression``, ``report``, ``frontal_lateral``, ``ap_pa``, ``split``,
  ...). One sample per image row; the reference is findings + impression, else the whole report.

A report with neither section nor text is skipped with a warning (nothing can be checked against it).
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import DEFAULT_REPORT_PROMPT, ImagePaths, make_record, text

log = logging.getLogger(__name__)

METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv"
SPLIT_CSV = "mimic-cxr-2.0.0-split.csv"
FRONTAL = {"PA", "AP"}
_REPORT = re.compile(r"^p(\d+)$")
_STUDY = re.compile(r"^s(\d+)\.txt$")
# a section heading at the start of a line: "FINDINGS:", "IMPRESSION :", "PA AND LATERAL VIEWS OF THE CHEST:"
_HEADING = re.compile(r"^[ \t]*([A-Z][A-Z /&()-]{2,60}?)[ \t]*:", re.MULTILINE)


def report_sections(report: str) -> dict[str, str]:
    """The report's sections by upper-case heading, each as one line of text."""
    marks = list(_HEADING.finditer(report))
    out: dict[str, str] = {}
    for m, nxt in zip(marks, [*marks[1:], None], strict=True):
        body = report[m.end(): nxt.start() if nxt else len(report)]
        name = " ".join(m.group(1).split())
        out[name] = " ".join(body.split())
    return out


def mimic_reference(report: str) -> str:
    """FINDINGS + IMPRESSION of a MIMIC-CXR report ('' when it has neither)."""
    s = report_sections(report)
    return " ".join(t for t in (s.get("FINDINGS", ""), s.get("IMPRESSION", "")) if t)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _find(root: Path, name: str) -> Path | None:
    for base in (root, root.parent):
        if (base / name).is_file():
            return base / name
    return None


def _mimic_files(source: Path) -> tuple[Path, Iterator[Path]]:
    """(the folder holding ``files/``, the report files in a stable order)."""
    if source.is_file():
        if not _STUDY.match(source.name):
            raise ValueError(f"mimic-cxr: {source} is not a study report named sXXXXXXXX.txt")
        return source.parents[3], iter([source])
    root = source
    if not (root / "files").is_dir():
        raise FileNotFoundError(f"mimic-cxr: {source} has no files/ folder (files/pXX/pXXXXXXXX/sXXXXXXXX.txt)")
    reports = (p for p in sorted((root / "files").glob("p*/p*/s*.txt")) if _STUDY.match(p.name))
    return root, reports


def import_mimic_cxr(source: Path, paths: ImagePaths) -> Iterator[dict[str, Any]]:
    """MIMIC-CXR reports (and MIMIC-CXR-JPG images when present), one sample per study."""
    root, reports = _mimic_files(Path(source))
    image_root = paths.images_dir or root
    views: dict[str, dict[str, str]] = {}
    meta_csv = _find(image_root, METADATA_CSV) or _find(root, METADATA_CSV)
    if meta_csv is not None:
        views = {r["dicom_id"]: r for r in _read_csv(meta_csv)}
    split_csv = _find(image_root, SPLIT_CSV) or _find(root, SPLIT_CSV)
    splits = {r["study_id"]: r["split"] for r in _read_csv(split_csv)} if split_csv is not None else {}
    skipped = 0
    for report_path in reports:
        study = _STUDY.match(report_path.name).group(1)
        subject = report_path.parent.name[1:]
        report = report_path.read_text(encoding="utf-8", errors="replace")
        reference = mimic_reference(report)
        if not reference:
            skipped += 1
            continue
        rel = report_path.parent.relative_to(root / "files")
        jpgs = sorted((image_root / "files" / rel / f"s{study}").glob("*.jpg"))
        positions = {p.stem: views.get(p.stem, {}).get("ViewPosition", "") for p in jpgs}
        frontal = [p for p in jpgs if positions[p.stem] in FRONTAL]
        chosen = frontal or jpgs
        meta: dict[str, Any] = {"dataset": "mimic_cxr", "subject_id": subject, "study_id": study,
                                "report_file": report_path.relative_to(root).as_posix(),
                                "view_positions": {p.stem: positions[p.stem] for p in chosen}}
        if study in splits:
            meta["split"] = splits[study]
        if len(chosen) < len(jpgs):
            meta["other_views"] = {p.stem: positions[p.stem] for p in jpgs if p not in chosen}
        if not jpgs:
            meta["images_note"] = "no MIMIC-CXR-JPG images found for this study; text-only"
        yield make_record(f"mimic-s{study}", "report", DEFAULT_REPORT_PROMPT, reference,
                          images=[paths.ref(p) for p in chosen], meta=meta)
    if skipped:
        log.warning("mimic-cxr: skipped %d reports with neither FINDINGS nor IMPRESSION", skipped)


_CHEXPERT_KEEP = ("frontal_lateral", "ap_pa", "deid_patient_id", "patient_report_date_order", "split",
                  "age", "sex", "path_to_dcm")


def import_chexpert_plus(source: Path, paths: ImagePaths) -> Iterator[dict[str, Any]]:
    """CheXpert Plus report CSV, one sample per image row."""
    source = Path(source)
    if source.is_dir():
        found = sorted(source.glob("df_chexpert_plus*.csv")) or sorted(source.glob("*.csv"))
        if not found:
            raise FileNotFoundError(f"chexpert-plus: folder {source} holds no df_chexpert_plus*.csv")
        source = found[0]
    image_root = paths.images_dir or source.parent
    with source.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "path_to_image" not in reader.fieldnames:
            raise ValueError(f"chexpert-plus: {source} has no path_to_image column (columns: {reader.fieldnames})")
        skipped = 0
        for row in reader:
            image = text(row.get("path_to_image"))
            sections = [text(row.get("section_findings")), text(row.get("section_impression"))]
            reference = " ".join(" ".join(s.split()) for s in sections if s) or " ".join(text(row.get("report")).split())
            if not image or not reference:
                skipped += 1
                continue
            meta = {"dataset": "chexpert_plus", "path_to_image": image,
                    **{k: row[k] for k in _CHEXPERT_KEEP if row.get(k) not in (None, "")}}
            sample_id = "chexpertplus-" + re.sub(r"\.(jpg|jpeg|png)$", "", image, flags=re.I).replace("/", "-")
            yield make_record(sample_id, "report", DEFAULT_REPORT_PROMPT, reference,
                              images=[paths.ref(image_root / image)], meta=meta)
    if skipped:
        log.warning("chexpert-plus: skipped %d rows without an image path or report text", skipped)
