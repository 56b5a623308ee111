"""MIMIC-CXR and CheXpert Plus importers, on committed fixtures in those layouts made from IU texts.

tests/fixtures/mimic_cxr and tests/fixtures/chexpert_plus hold public IU X-ray reports (CC BY-NC-ND)
laid out as the credentialed datasets are (see their SOURCE.md); each study's IU uid is recorded, so
the references are checked against the IU report they came from.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.importers import FORMATS, import_samples, write_manifest
from pipeline.importers.mimic import mimic_reference, report_sections
from pipeline.runner import run
from schemas.sample import parse_sample

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MIMIC = FIXTURES / "mimic_cxr"
CHEXPERT = FIXTURES / "chexpert_plus"


def _iu_reports() -> dict[int, dict]:
    # the IU reports the fixtures were made from: the shared file when present, else the fixture excerpt
    from data_paths import SHARED

    path = SHARED / "iu_xray_openi_reports" / "reports.jsonl"
    return {r["uid"]: r for r in map(json.loads, path.open(encoding="utf-8"))}


def _squash(s: str) -> str:
    return " ".join(s.split())


def test_both_formats_are_registered():
    assert {"mimic-cxr", "chexpert-plus"} <= set(FORMATS)


def test_report_sections_are_split_on_their_headings():
    text = (MIMIC / "files/p10/p10000032/s50000001.txt").read_text()
    s = report_sections(text)
    assert {"EXAMINATION", "INDICATION", "COMPARISON", "FINDINGS", "IMPRESSION"} <= set(s)
    uid = json.loads((MIMIC / "iu_uids.json").read_text())["s50000001"]
    assert s["FINDINGS"] == _squash(_iu_reports()[uid]["findings"])  # unwrapped back to one line
    assert mimic_reference(" FINAL REPORT\n IMPRESSION:  No acute process.\n") == "No acute process."
    assert mimic_reference(" FINAL REPORT\n WET READ: ___ 3:12 PM\n") == ""


def test_mimic_cxr_studies_become_samples_with_frontal_images(tmp_path):
    uids = json.loads((MIMIC / "iu_uids.json").read_text())
    iu = _iu_reports()
    records = list(import_samples("mimic-cxr", MIMIC, manifest_dir=tmp_path))
    ids = [r["sample_id"] for r in records]
    assert ids == ["mimic-s50000001", "mimic-s50000002", "mimic-s50000003", "mimic-s50000004"]  # s..05 has no text
    for r in records:
        parse_sample(r)
        src = iu[uids[r["sample_id"][len("mimic-"):]]]
        study = r["meta"]["study_id"]
        expected = [src["findings"], src["impression"]] if study < "50000004" else [src["impression"]]
        assert r["reference"] == " ".join(_squash(t) for t in expected)
        assert r["meta"]["dataset"] == "mimic_cxr" and r["meta"]["split"] == "train"
    first, _, third, fourth = records
    # the PA view is kept, the lateral is recorded as another view; a study with only a lateral keeps it
    assert len(first["images"]) == 1 and first["images"][0].endswith("010a1b2c3-d4e5f6a7-b8c9d0e1-f2a3b4c5-d6e7f8a9.jpg")
    assert list(first["meta"]["view_positions"].values()) == ["PA"]
    assert list(first["meta"]["other_views"].values()) == ["LATERAL"]
    assert list(third["meta"]["view_positions"].values()) == ["LATERAL"]
    assert fourth["images"] == [] and "text-only" in fourth["meta"]["images_note"]
    assert all(Path(p).is_file() for r in records for p in r["images"])  # absolute: outside tmp_path


def test_mimic_cxr_images_dir_and_a_single_report(tmp_path):
    records = list(import_samples("mimic-cxr", MIMIC / "files/p10/p10000032/s50000002.txt"))
    assert [r["sample_id"] for r in records] == ["mimic-s50000002"] and len(records[0]["images"]) == 1
    # reports in one folder, images (and their metadata) in another: --images-dir
    reports = tmp_path / "reports"
    for p in (MIMIC / "files").rglob("*.txt"):
        dst = reports / p.relative_to(MIMIC)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(p.read_text())
    with_images = list(import_samples("mimic-cxr", reports, images_dir=MIMIC))
    without = list(import_samples("mimic-cxr", reports))
    assert [len(r["images"]) for r in with_images] == [1, 1, 1, 0]
    assert [len(r["images"]) for r in without] == [0, 0, 0, 0]
    with pytest.raises(FileNotFoundError, match="files/"):
        list(import_samples("mimic-cxr", tmp_path / "reports" / "files" / "p10"))


def test_chexpert_plus_rows_become_samples():
    with (CHEXPERT / "df_chexpert_plus_240401.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    iu = _iu_reports()
    records = list(import_samples("chexpert-plus", CHEXPERT))
    assert len(records) == 4  # the fifth row has no text
    for rec, row in zip(records, rows, strict=False):
        parse_sample(rec)
        src = iu[int(row["iu_uid"])]
        if row["section_findings"]:
            assert rec["reference"] == f"{_squash(src['findings'])} {_squash(src['impression'])}"
        else:  # only the whole report: used as it is
            assert rec["reference"] == _squash(row["report"])
        assert rec["meta"]["frontal_lateral"] == "Frontal" and rec["meta"]["split"] == "train"
        assert len(rec["images"]) == 1 and Path(rec["images"][0]).is_file()
    assert records[0]["sample_id"] == "chexpertplus-train-patient00001-study1-view1_frontal"
    with pytest.raises(ValueError, match="path_to_image"):
        list(import_samples("chexpert-plus", MIMIC / "mimic-cxr-2.0.0-split.csv"))


def test_imported_mimic_and_chexpert_samples_run_into_pairs(tmp_path):
    # no responses in these layouts: give each sample its own reference with one finding flipped
    rows = list(import_samples("mimic-cxr", MIMIC, manifest_dir=tmp_path))
    rows += list(import_samples("chexpert-plus", CHEXPERT, manifest_dir=tmp_path))
    for r in rows:
        r["responses"] = [r["reference"] + " There is a small right pleural effusion."]
    manifest = tmp_path / "samples.jsonl"
    write_manifest(rows, manifest)
    summary = run(manifest, tmp_path / "out", load_config(None, {}), progress=False, workers=1)
    assert summary.counts["samples"] == len(rows) == 8
    assert summary.counts["pairs"] + summary.counts["rejects"] == len(rows)
    assert summary.counts["pairs"] >= 6, summary.format()
