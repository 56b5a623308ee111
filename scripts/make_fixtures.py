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
    # a few with only an impression, and with neither section (the importer's two other cases)
    kept += [r for r in reports if r not in kept and not r.get("findings") and r.get("impression")][:3]
    kept += [r for r in reports if r not in kept and not r.get("findings") and not r.get("impression")][:2]
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
    rows = [r for i, r in enumerate(_jsonl(src / "model_reports.jsonl"))
            if i < 3 or r["image_index"] == "00000013_043.png"]  # test_corruptors names that one
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


MIMIC_NOTE = """# mimic_cxr: the MIMIC-CXR / MIMIC-CXR-JPG layout, filled with public IU X-ray texts

Not MIMIC data (that is credentialed): the folder layout of MIMIC-CXR (`files/pXX/pXXXXXXXX/sXXXXXXXX.txt`)
and MIMIC-CXR-JPG (`files/.../sXXXXXXXX/<dicom_id>.jpg`, `mimic-cxr-2.0.0-metadata.csv`,
`mimic-cxr-2.0.0-split.csv`), written by `scripts/make_fixtures.py`, to test `build-pairs import mimic-cxr`.

- Report texts: IU X-Ray / OpenI reports (indication, comparison, findings, impression reproduced
  unmodified, laid out under MIMIC-style headings and wrapped at 70 characters), from
  `../shared/data/iu_xray_openi_reports` (torchxrayvision `NLMCXR_reports.tgz`). License: CC BY-NC-ND 4.0.
  The IU uid of each study is in `iu_uids.json`.
- Images: the two NIH ChestX-ray14 images of torchxrayvision's tests, downscaled to 128 px, saved as JPEG.
  NIH ChestX-ray14 terms (no restrictions on use; cite Wang et al. CVPR 2017, acknowledge the NIH Clinical Center).
- Study s50000005 has neither FINDINGS nor IMPRESSION (the importer skips it), s50000004 only IMPRESSION.
"""

CHEXPERT_NOTE = """# chexpert_plus: a CheXpert Plus style CSV, filled with public IU X-ray texts

Not CheXpert Plus data (research-use agreement): its CSV columns (`path_to_image`, `section_findings`,
`section_impression`, `report`, `frontal_lateral`, `ap_pa`, `deid_patient_id`, `split`, ...), written by
`scripts/make_fixtures.py`, to test `build-pairs import chexpert-plus`.

- Texts: IU X-Ray / OpenI reports, sections unmodified (CC BY-NC-ND 4.0), from
  `../shared/data/iu_xray_openi_reports`.
- Images: NIH ChestX-ray14 (torchxrayvision test images) downscaled to 128 px, JPEG; NIH terms as above.
- Row 4 has only the whole `report`; row 5 has no text at all (the importer skips it).
"""


def _wrap(text: str) -> str:
    import textwrap

    return "\n".join(" " + line for line in textwrap.wrap(text, 70))


def _mimic_report(r: dict, findings: bool = True, impression: bool = True) -> str:
    parts = ["                                 FINAL REPORT",
             " EXAMINATION:  CHEST (PA AND LAT)", "",
             f" INDICATION:  {r.get('indication') or '___'}", "",
             f" COMPARISON:  {r.get('comparison') or 'None.'}", ""]
    if findings and r.get("findings"):
        parts += [" FINDINGS:", "", _wrap(r["findings"]), ""]
    if impression and r.get("impression"):
        parts += [" IMPRESSION:", "", _wrap(r["impression"]), ""]
    return "\n".join(parts) + "\n"


def layouts(shared: Path, fixtures: Path) -> None:
    """tests/fixtures/mimic_cxr and tests/fixtures/chexpert_plus, from IU reports and NIH images."""
    from PIL import Image

    reports = [r for r in _jsonl(fixtures / "data" / "iu_xray_openi_reports" / "reports.jsonl")
               if r.get("findings") and r.get("impression")][:9]  # from the excerpt: the tests can look them up
    nih = shared / "nih_cxr14_txv_test_images" / "images"
    thumbs = [Image.open(nih / n).convert("L").resize((128, 128)) for n in ("00000001_000.png", "00027426_000.png")]

    root = fixtures / "mimic_cxr"
    shutil.rmtree(root, ignore_errors=True)
    studies = [("10000032", "50000001"), ("10000032", "50000002"), ("10000764", "50000003"),
               ("11000011", "50000004"), ("11000011", "50000005")]
    meta_rows, split_rows, uids = [], [], {}
    for k, ((subject, study), r) in enumerate(zip(studies, reports, strict=False)):
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}"
        folder.mkdir(parents=True, exist_ok=True)
        text = _mimic_report(r, findings=k < 3, impression=k < 4)
        if k == 4:
            text = "                                 FINAL REPORT\n WET READ: ___ 3:12 PM\n\n"
        (folder / f"s{study}.txt").write_text(text, encoding="utf-8")
        uids[f"s{study}"] = r["uid"]
        split_rows.append({"dicom_id": "", "study_id": study, "subject_id": subject, "split": "train"})
        if k < 3:  # JPGs for the first three studies: a PA and a lateral (the last only a lateral)
            (folder / f"s{study}").mkdir()
            for v, (view, img) in enumerate((("PA", thumbs[0]), ("LATERAL", thumbs[1]))):
                if k == 2 and view == "PA":
                    continue
                dicom_id = f"{study[-2:]}{v}a1b2c3-d4e5f6a7-b8c9d0e1-f2a3b4c5-d6e7f8a9"
                img.save(folder / f"s{study}" / f"{dicom_id}.jpg", quality=90)
                meta_rows.append({"dicom_id": dicom_id, "subject_id": subject, "study_id": study,
                                  "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
                                  "ViewPosition": view, "Rows": 128, "Columns": 128})
                split_rows[-1]["dicom_id"] = dicom_id
    for name, rows in (("mimic-cxr-2.0.0-metadata.csv", meta_rows), ("mimic-cxr-2.0.0-split.csv", split_rows)):
        with (root / name).open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    (root / "iu_uids.json").write_text(json.dumps(uids, indent=1) + "\n")
    (root / "SOURCE.md").write_text(MIMIC_NOTE)

    root = fixtures / "chexpert_plus"
    shutil.rmtree(root, ignore_errors=True)
    cols = ["path_to_image", "path_to_dcm", "frontal_lateral", "ap_pa", "deid_patient_id",
            "patient_report_date_order", "report", "section_findings", "section_impression", "split", "iu_uid"]
    rows = []
    for k, r in enumerate(reports[4:9]):
        image = f"train/patient0000{k + 1}/study1/view1_frontal.jpg"
        (root / image).parent.mkdir(parents=True, exist_ok=True)
        thumbs[k % 2].save(root / image, quality=90)
        row = {"path_to_image": image, "path_to_dcm": image.replace(".jpg", ".dcm"), "frontal_lateral": "Frontal",
               "ap_pa": "PA", "deid_patient_id": f"patient0000{k + 1}", "patient_report_date_order": 1,
               "report": f"FINDINGS: {r['findings']} IMPRESSION: {r['impression']}",
               "section_findings": r["findings"], "section_impression": r["impression"], "split": "train",
               "iu_uid": r["uid"]}
        if k == 3:
            row["section_findings"] = row["section_impression"] = ""
        if k == 4:
            row["section_findings"] = row["section_impression"] = row["report"] = ""
        rows.append(row)
    with (root / "df_chexpert_plus_240401.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    (root / "SOURCE.md").write_text(CHEXPERT_NOTE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "data")
    args = ap.parse_args()
    iu(args.shared, args.out)
    nih(args.shared, args.out)
    geometry(args.shared, args.out)
    vqa(args.shared, args.out)
    layouts(args.shared, args.out.parent)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
