"""Lesion-geometry importers: COCO detection files (TBX11K) and ChestX-Det boxes with polygons.

These datasets have no report text; the reference names each annotated finding
(``findings.labels_to_report``), since the annotations carry no wording about location or severity.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import (
    DEFAULT_REPORT_PROMPT,
    ImagePaths,
    first_existing,
    make_record,
    read_json,
    read_jsonl,
    resolve_source,
    text,
    xywh_to_xyxy,
)
from .findings import (
    CHESTX_DET_LABELS,
    NO_TUBERCULOSIS_SENTENCE,
    NORMAL_SENTENCE,
    TBX11K_LABELS,
    labels_to_report,
    scope_text,
)


def import_coco(source: Path, paths: ImagePaths) -> Iterator[dict[str, Any]]:
    """One record per COCO image; ``bbox`` [x, y, w, h] becomes a lesion box [x1, y1, x2, y2]."""
    path = resolve_source(source, ["annotations_coco.json", "annotations.json"], "coco")
    coco = read_json(path)
    if not isinstance(coco, dict) or "images" not in coco:
        raise ValueError(f"{path}: not a COCO file (no 'images' list)")
    categories = {c["id"]: c for c in coco.get("categories", [])}
    tuberculosis = bool(categories) and all(
        "tuberculosis" in (text(c.get("supercategory")) + text(c.get("name"))).lower() for c in categories.values()
    )
    normal = NO_TUBERCULOSIS_SENTENCE if tuberculosis else NORMAL_SENTENCE
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for ann in coco.get("annotations", []):
        by_image.setdefault(ann["image_id"], []).append(ann)
    for im in coco["images"]:
        file_name = text(im.get("file_name"))
        anns = by_image.get(im["id"], [])
        lesions = [
            {"label": text(categories.get(a["category_id"], {}).get("name")) or str(a["category_id"]),
             "box": xywh_to_xyxy(*a["bbox"]), "image": 0, "category_id": a["category_id"]}
            for a in anns if a.get("bbox")
        ]
        image = paths.in_images_dir(file_name, Path(file_name).name) or first_existing(
            [path.parent / "imgs" / file_name, path.parent / "images" / file_name, path.parent / file_name]
        )
        meta = {k: v for k, v in im.items() if k not in {"id"}}
        meta.update(dataset="tbx11k" if tuberculosis else "coco", coco_image_id=im["id"])
        if tuberculosis:
            meta["reference_scope"] = scope_text(TBX11K_LABELS)
        yield make_record(
            f"{meta['dataset']}-{Path(file_name).stem}", "report", DEFAULT_REPORT_PROMPT,
            labels_to_report([les["label"] for les in lesions], normal=normal),
            images=[paths.ref(image)], lesions=lesions, meta=meta,
        )


def import_chestx_det(source: Path, paths: ImagePaths) -> Iterator[dict[str, Any]]:
    """One record per ChestX-Det image with a box and a polygon per finding instance."""
    path = resolve_source(source, ["annotations.jsonl"], "chestx-det")
    for row in read_jsonl(path):
        name = text(row.get("file_name"))
        syms, boxes, polygons = row.get("syms") or [], row.get("boxes") or [], row.get("polygons") or []
        if not len(syms) == len(boxes) == len(polygons):
            raise ValueError(f"{path}: {name}: syms, boxes and polygons differ in length")
        lesions = [
            {"label": s, "box": [float(v) for v in b], "polygon": [[float(x), float(y)] for x, y in p], "image": 0}
            for s, b, p in zip(syms, boxes, polygons, strict=True)
        ]
        meta: dict[str, Any] = {k: v for k, v in row.items() if k not in {"syms", "boxes", "polygons"}}
        meta.update(dataset="chestx_det", lesion_space=[1024, 1024], reference_scope=scope_text(CHESTX_DET_LABELS))
        image = paths.in_images_dir(name)
        if image is None:
            meta["images_note"] = ("ChestX-Det images not shipped; text-only (lesions refer to the 1024x1024 "
                                   "image; pass --images-dir)")
        yield make_record(
            f"chestxdet-{Path(name).stem}", "report", DEFAULT_REPORT_PROMPT, labels_to_report(syms),
            images=[paths.ref(image)] if image is not None else [], lesions=lesions, meta=meta,
        )
