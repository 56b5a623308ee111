"""NIH ChestX-ray14 importers: ReXrank model reports on shipped images, and the radiologist box list.

NIH never released report text, so the reference is written from the NIH finding labels
(``findings.labels_to_report``) and says so in ``meta.reference_source``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import (
    DEFAULT_REPORT_PROMPT,
    ImagePaths,
    make_record,
    read_jsonl,
    resolve_source,
    text,
    xywh_to_xyxy,
)
from .findings import NIH_LABELS, labels_to_report, scope_text

DATA_ENTRY_FIELDS = (
    "image_index", "finding_labels", "follow_up", "patient_id", "patient_age", "patient_gender",
    "view_position", "original_width", "original_height", "pixel_spacing_x", "pixel_spacing_y",
)
NIH_SPACE = [1024, 1024]  # the pixel grid of the released NIH PNGs, which boxes refer to


def _stem(name: str) -> str:
    return Path(name).stem


def import_nih_reports(source: Path, paths: ImagePaths) -> Iterator[dict[str, Any]]:
    """Seven public models' reports per shipped NIH image, replayed as on-policy responses."""
    path = resolve_source(source, ["model_reports.jsonl"], "nih-reports")
    for row in read_jsonl(path):
        name = text(row.get("image_index")) or Path(text(row.get("image"))).name
        shipped = path.parent / text(row.get("image")) if text(row.get("image")) else path.parent / "images" / name
        image = paths.in_images_dir(name) or shipped
        reports: dict[str, str] = row.get("model_reports") or {}
        labels = list(row.get("nih_finding_labels") or [])
        meta = {k: v for k, v in row.items() if k not in {"model_reports", "image"}}
        yield make_record(
            f"nih-{_stem(name)}", "report", DEFAULT_REPORT_PROMPT, labels_to_report(labels),
            images=[paths.ref(image)], responses=[str(t) for t in reports.values()],
            meta={"dataset": "nih_cxr14", "response_models": list(reports), "reference_source": "nih_finding_labels",
                  "reference_scope": scope_text(NIH_LABELS), **meta},
        )


def _read_data_entry(path: Path | None) -> dict[str, dict[str, str]]:
    """NIH Data_Entry rows by image name (the header names 9 columns but rows hold 11 cells)."""
    if path is None:
        return {}
    rows: dict[str, dict[str, str]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        for cells in reader:
            if not cells:
                continue
            names = DATA_ENTRY_FIELDS if len(cells) == len(DATA_ENTRY_FIELDS) else header
            row = {n: c.strip() for n, c in zip(names, cells, strict=False)}
            rows[cells[0].strip()] = row
    return rows


def _read_boxes(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Box rows grouped by image, in file order; works with the original and the snake_case header."""
    by_image: dict[str, list[dict[str, Any]]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        for line_no, cells in enumerate(reader, 2):
            if not cells or not "".join(cells).strip():
                continue
            try:
                name, label = cells[0].strip(), cells[1].strip()
                box = xywh_to_xyxy(*(float(c) for c in cells[2:6]))
            except (IndexError, TypeError, ValueError) as e:
                raise ValueError(f"{path}:{line_no}: expected image, label, x, y, w, h ({e})") from e
            by_image.setdefault(name, []).append({"label": label, "box": box, "image": 0})
    return by_image


def import_nih_bbox(source: Path, paths: ImagePaths) -> Iterator[dict[str, Any]]:
    """One record per boxed NIH image: boxes as lesions, reference from the image's NIH labels."""
    path = resolve_source(source, ["bbox_list_2017.csv", "BBox_List_2017.csv"], "nih-bbox")
    entries = _read_data_entry(next(iter(sorted(path.parent.glob("[Dd]ata_[Ee]ntry*.csv"))), None))
    for name, lesions in _read_boxes(path).items():
        entry = entries.get(name)
        if entry and entry.get("finding_labels"):
            labels, source_name = entry["finding_labels"].split("|"), "nih_finding_labels"
        else:
            labels, source_name = [les["label"] for les in lesions], "bbox_labels"
        meta: dict[str, Any] = {"dataset": "nih_cxr14", "image_index": name, "reference_source": source_name,
                                "reference_scope": scope_text(NIH_LABELS), "lesion_space": NIH_SPACE}
        if entry:
            meta["data_entry"] = entry
        image = paths.in_images_dir(name)
        if image is None:
            ref = paths.beside_manifest(f"images/{name}")
            meta["images_note"] = ("NIH ChestX-ray14 images not shipped; expected in images/ beside the "
                                   "manifest (or pass --images-dir)")
        else:
            ref = paths.ref(image)
        yield make_record(
            f"nihbbox-{_stem(name)}", "report", DEFAULT_REPORT_PROMPT, labels_to_report(labels),
            images=[ref], lesions=lesions, meta=meta,
        )
