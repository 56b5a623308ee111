"""Write ``tests/fixtures/data``: small excerpts of ``../shared/data`` in the same layout.

Why: a clone without ``../shared`` must still run the suite on real text and real images. Each
folder keeps the shared folder's name and file layout, holds a few dozen rows (never a whole
dataset), and carries a ``SOURCE.md`` with the origin and license of its rows. The excerpt is
deterministic (first rows, plus rows the tests name), so rerunning this script reproduces the files.

    .venv/bin/python scripts/make_fixtures.py [--shared ../shared/data] [--out tests/fixtures/data]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IU_ROWS = 140  # generations kept: test_text_pairs counts > 300 detected errors on them; ids 12 and 60 are named
IU_IDS = {"12", "60"}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _source(src: Path, dst: Path, what: str) -> None:
    """The shared SOURCE.md (origin, license, fields) under a note saying what this excerpt keeps."""
    text = (src / "SOURCE.md").read_text(encoding="utf-8")
    note = (f"> Test fixture: an excerpt of the shared folder of the same name ({what}), written by\n"
            f"> `scripts/make_fixtures.py`. Rows are copied verbatim; counts below describe the full source.\n\n")
    (dst / "SOURCE.md").write_text(note + text, encoding="utf-8")


def iu(shared: Path, out: Path) -> set[str]:
    rows = _jsonl(shared / "iu_xray_model_generations" / "generations.jsonl")
    keep = [r for i, r in enumerate(rows) if i < IU_ROWS or r["id"] in IU_IDS]
    dst = out / "iu_xray_model_generations"
    _write_jsonl(dst / "generations.jsonl", keep)
    _source(shared / "iu_xray_model_generations", dst, f"{len(keep)} of {len(rows)} rows")
    ids = {r["id"] for r in keep}

    reports = _jsonl(shared / "iu_xray_openi_reports" / "reports.jsonl")
    kept = [r for r in reports if str(r["uid"]) in ids]
    kept += [r for r in reports if str(r["uid"]) not in ids][: max(0, 60 - len(kept))]
    dst = out / "iu_xray_openi_reports"
    _write_jsonl(dst / "reports.jsonl", kept)
    _source(shared / "iu_xray_openi_reports", dst, f"{len(kept)} of {len(reports)} reports")

    ann = json.loads((shared / "iu_xray_r2gen_annotation" / "annotation.json").read_text(encoding="utf-8"))
    small = {"train": ann["train"][:12], "val": ann["val"][:6],
             "test": [e for e in ann["test"] if e["id"] in ids]}
    dst = out / "iu_xray_r2gen_annotation"
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "annotation.json").write_text(json.dumps(small, ensure_ascii=False), encoding="utf-8")
    _source(shared / "iu_xray_r2gen_annotation", dst, ", ".join(f"{k} {len(v)}" for k, v in small.items()))

    dst = out / "iu_xray_rexrank"
    dst.mkdir(parents=True, exist_ok=True)
    for name, n in (("ReXRank_IUXray_test.json", 16), ("ReXRank_IUXray_valid.json", 8)):
        d = json.loads((shared / "iu_xray_rexrank" / name).read_text(encoding="utf-8"))
        (dst / name).write_text(json.dumps(dict(list(d.items())[:n]), ensure_ascii=False), encoding="utf-8")
    _source(shared / "iu_xray_rexrank", dst, "16 test and 8 valid studies")
    return ids


def nih(shared: Path, out: Path) -> None:
    src = shared / "nih_cxr14_rexrank_model_reports"
    rows = _jsonl(src / "model_reports.jsonl")[:3]
    dst = out / src.name
    (dst / "images").mkdir(parents=True, exist_ok=True)
    for r in rows:
        shutil.copy(src / r["image"], dst / r["image"])
    _write_jsonl(dst / "model_reports.jsonl", rows)
    _source(src, dst, f"{len(rows)} images with their model reports")

    src = shared / "nih_cxr14_txv_test_images"
    dst = out / src.name
    shutil.copytree(src, dst, dirs_exist_ok=True)
    (dst / "SOURCE.md").chmod(0o644)
    _source(src, dst, "both images")

    src = shared / "nih_cxr14_bbox"
    dst = out / src.name
    dst.mkdir(parents=True, exist_ok=True)
    with (src / "bbox_list_2017.csv").open(newline="") as f:
        boxes = list(csv.reader(f))
    header, body = boxes[0], boxes[1:41]
    with (dst / "bbox_list_2017.csv").open("w", newline="") as f:
        csv.writer(f).writerows([header, *body])
    names = {r[0] for r in body}
    lines = (src / "data_entry_2017_v2020_subset.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (dst / "data_entry_2017_v2020_subset.csv").write_text(
        lines[0] + "".join(ln for ln in lines[1:] if ln.split(",", 1)[0] in names), encoding="utf-8")
    _source(src, dst, f"{len(body)} boxes and their Data_Entry rows")


def geometry(shared: Path, out: Path) -> None:
    src = shared / "chestx_det_annotations"
    rows = _jsonl(src / "annotations.jsonl")[:30]
    dst = out / src.name
    _write_jsonl(dst / "annotations.jsonl", rows)
    _source(src, dst, f"{len(rows)} images' annotations")

    for name in ("tbx11k_samples", "chexpert_labeler_lexicon", "radgraph_readme_examples"):
        shutil.copytree(shared / name, out / name, dirs_exist_ok=True)
        for p in (out / name).rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        _source(shared / name, out / name, "the whole folder: it is small")


def vqa(shared: Path, out: Path) -> None:
    src = shared / "vqa_rad"
    rows = _jsonl(src / "qa.jsonl")
    images = sorted({r["image_png"] for r in rows if r["image_png"]}, key=lambda p: (src / p).stat().st_size)[:4]
    keep = [r for r in rows if r["image_png"] in images] + [r for r in rows if not r["image_png"]][:6]
    dst = out / src.name
    for p in images:
        (dst / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / p, dst / p)
    _write_jsonl(dst / "qa.jsonl", keep)
    _source(src, dst, f"{len(keep)} questions on {len(images)} chest images, plus 6 without an image file")

    src = shared / "vqa_slake_qa"
    rows = _jsonl(src / "qa.jsonl")
    xray = sorted({r["img_id"] for r in rows if r["modality"] == "X-Ray"})[:3]
    other = sorted({r["img_id"] for r in rows if r["modality"] != "X-Ray"})[:1]
    keep = [r for r in rows if r["img_id"] in set(xray) | set(other)]
    dst = out / src.name
    _write_jsonl(dst / "qa.jsonl", keep)
    _source(src, dst, f"{len(keep)} questions (both languages) on {len(xray) + len(other)} images")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "data")
    args = ap.parse_args()
    iu(args.shared, args.out)
    nih(args.shared, args.out)
    geometry(args.shared, args.out)
    vqa(args.shared, args.out)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
