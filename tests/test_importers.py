"""Importers on the real shared datasets: counts, fields against the raw files, boxes, image paths."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import pytest
from data_paths import SHARED as DATA  # noqa: E402 - the full shared data, else the committed excerpts

from pipeline.importers import FORMATS, import_samples, write_manifest
from pipeline.importers.findings import NO_TUBERCULOSIS_SENTENCE, NORMAL_SENTENCE, labels_to_report
from pipeline.importers.iu import IMAGES_NOTE
from schemas.sample import parse_sample

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"data not found at {DATA}")

SOURCES = {
    "iu-generations": "iu_xray_model_generations/generations.jsonl",
    "openi": "iu_xray_openi_reports/reports.jsonl",
    "r2gen": "iu_xray_r2gen_annotation/annotation.json",
    "rexrank": "iu_xray_rexrank",
    "nih-reports": "nih_cxr14_rexrank_model_reports/model_reports.jsonl",
    "vqa-rad": "vqa_rad/qa.jsonl",
    "slake": "vqa_slake_qa/qa.jsonl",
    "coco": "tbx11k_samples/annotations_coco.json",
    "chestx-det": "chestx_det_annotations/annotations.jsonl",
    "nih-bbox": "nih_cxr14_bbox/bbox_list_2017.csv",
}

_cache: dict[str, list[dict]] = {}


def records(fmt: str) -> list[dict]:
    """Records with the default image lookup, manifest in a folder outside the data (absolute paths)."""
    if fmt not in _cache:
        _cache[fmt] = list(import_samples(fmt, DATA / SOURCES[fmt], manifest_dir=Path("/nonexistent-manifest-dir")))
    return _cache[fmt]


def by_id(fmt: str) -> dict[str, dict]:
    return {r["sample_id"]: r for r in records(fmt)}


def raw_jsonl(rel: str) -> list[dict]:
    with open(DATA / rel, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def resolve(manifest_dir: Path, image: str) -> Path:
    p = Path(image)
    return p if p.is_absolute() else manifest_dir / p


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


# ---------------------------------------------------------------- every format


@pytest.mark.parametrize("fmt", list(SOURCES))
def test_records_validate_and_ids_are_unique(fmt):
    recs = records(fmt)
    assert recs
    for r in recs:
        sample = parse_sample(r)
        assert sample.reference.strip()
        assert r["meta"]["dataset"]
        for lesion in sample.lesions:
            if lesion.box is not None:
                x1, y1, x2, y2 = lesion.box
                assert x1 <= x2 and y1 <= y2
    assert len({r["sample_id"] for r in recs}) == len(recs)


def test_registry_covers_the_contract_formats():
    # mimic-cxr and chexpert-plus have no shared data: tests/test_layout_importers.py, on their own fixtures
    assert set(FORMATS) == set(SOURCES) | {"mimic-cxr", "chexpert-plus"}


def test_unknown_format_lists_valid_names():
    with pytest.raises(ValueError) as err:
        list(import_samples("no-such-format", DATA))
    for name in FORMATS:
        assert name in str(err.value)


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="openi"):
        list(import_samples("openi", tmp_path / "absent.jsonl"))
    with pytest.raises(FileNotFoundError, match="reports.jsonl"):
        list(import_samples("openi", tmp_path))


def test_folder_and_file_sources_agree():
    from_folder = list(import_samples("openi", DATA / "iu_xray_openi_reports"))
    from_file = list(import_samples("openi", DATA / SOURCES["openi"]))
    assert from_folder == from_file


# ---------------------------------------------------------------- IU X-Ray


def test_iu_generations_against_raw():
    raw = raw_jsonl(SOURCES["iu-generations"])
    recs = by_id("iu-generations")
    assert len(recs) == len(raw)
    for row in raw[:25]:
        r = recs[f"iu-{row['id']}"]
        assert r["task"] == "report"
        assert r["reference"] == row["reference_report"].strip()
        assert r["reference"] != r["reference"].lower()  # original casing, not the normalized one
        assert r["responses"] == [row["generated_report"].strip()]
        assert r["meta"]["radgraph_f1"] == row["radgraph_f1"]
        assert r["images"] == []
        assert r["meta"]["images_note"] == IMAGES_NOTE


def test_iu_generations_finds_images_in_images_dir(tmp_path):
    uid = raw_jsonl(SOURCES["iu-generations"])[0]["uid"]
    frontal = touch(tmp_path / "imgs" / f"CXR{uid}_IM-0001" / "0.png")
    lateral = touch(tmp_path / "imgs" / f"CXR{uid}_IM-0001" / "1.png")
    touch(tmp_path / "imgs" / f"CXR{uid}9_IM-0002" / "0.png")  # another uid sharing the prefix
    recs = {r["sample_id"]: r for r in import_samples(
        "iu-generations", DATA / SOURCES["iu-generations"], images_dir=tmp_path / "imgs", manifest_dir=tmp_path)}
    r = recs[f"iu-{uid}"]
    assert r["images"] == [frontal.relative_to(tmp_path).as_posix(), lateral.relative_to(tmp_path).as_posix()]
    assert "images_note" not in r["meta"]
    # an images dir outside the manifest's folder gives absolute paths
    elsewhere = list(import_samples("iu-generations", DATA / SOURCES["iu-generations"],
                                    images_dir=tmp_path / "imgs", manifest_dir=tmp_path / "out"))
    assert next(x for x in elsewhere if x["sample_id"] == f"iu-{uid}")["images"] == [str(frontal), str(lateral)]


def test_openi_reference_is_findings_then_impression(tmp_path):
    raw = raw_jsonl(SOURCES["openi"])
    usable = [row for row in raw if (row["findings"] or "").strip() or (row["impression"] or "").strip()]
    recs = by_id("openi")
    assert len(recs) == len(usable) < len(raw)
    both = next(row for row in raw if row["findings"] and row["impression"])
    only_impression = next(row for row in raw if not row["findings"] and row["impression"])
    assert recs[f"openi-{both['uid']}"]["reference"] == f"{both['findings'].strip()} {both['impression'].strip()}"
    assert recs[f"openi-{only_impression['uid']}"]["reference"] == only_impression["impression"].strip()
    r = recs[f"openi-{both['uid']}"]
    assert "responses" not in r and r["prompt"] and r["images"] == []
    assert r["meta"]["indication"] == both["indication"]

    ids = [im["image_id"] for im in both["images"]]
    touch(tmp_path / "images" / f"{ids[0]}.png")
    with_dir = next(x for x in import_samples("openi", DATA / SOURCES["openi"], images_dir=tmp_path / "images",
                                              manifest_dir=tmp_path) if x["sample_id"] == f"openi-{both['uid']}")
    assert with_dir["images"] == [f"images/{ids[0]}.png"]


def test_r2gen_all_splits():
    with open(DATA / SOURCES["r2gen"], encoding="utf-8") as f:
        raw = json.load(f)
    recs = by_id("r2gen")
    assert len(recs) == sum(len(v) for v in raw.values())
    assert Counter(r["meta"]["split"] for r in recs.values()) == {k: len(v) for k, v in raw.items()}
    for split, entries in raw.items():
        entry = entries[0]
        r = recs[f"r2gen-{entry['id']}"]
        assert r["meta"]["split"] == split
        assert r["reference"] == entry["report"].strip()
        assert r["images"] == []


def test_rexrank_folder_and_single_file():
    files = sorted((DATA / "iu_xray_rexrank").glob("*.json"))
    raw = {}
    for path in files:
        with open(path, encoding="utf-8") as f:
            raw.update(json.load(f))
    recs = by_id("rexrank")
    assert len(recs) == len(raw)
    study_id, study = next(iter(raw.items()))
    r = recs[f"rexrank-{study_id}"]
    findings, impression = study["section_findings"].strip(), study["section_impression"].strip()
    assert r["reference"] == f"{findings} {impression}"
    assert r["meta"]["split"] == study["split"]
    assert r["meta"]["uid"] == int(study_id[3:].split("_")[0])
    test_file = DATA / "iu_xray_rexrank" / "ReXRank_IUXray_test.json"
    with open(test_file, encoding="utf-8") as f:
        n_test = len(json.load(f))
    assert len(list(import_samples("rexrank", test_file))) == n_test < len(raw)


# ---------------------------------------------------------------- NIH ChestX-ray14


def test_nih_reports_against_raw():
    folder = DATA / "nih_cxr14_rexrank_model_reports"
    raw = raw_jsonl(SOURCES["nih-reports"])
    # manifest written into the dataset folder: the shipped relative paths come back unchanged
    recs = {r["sample_id"]: r for r in import_samples("nih-reports", folder, manifest_dir=folder)}
    assert len(recs) == len(raw)
    for row in raw:
        r = recs[f"nih-{Path(row['image_index']).stem}"]
        assert r["images"] == [row["image"]]
        assert resolve(folder, r["images"][0]).is_file()
        assert r["responses"] == list(row["model_reports"].values())
        assert r["meta"]["response_models"] == list(row["model_reports"])
        assert len(r["responses"]) == 7
        assert r["meta"]["reference_source"] == "nih_finding_labels"
        if row["nih_finding_labels"] == ["No Finding"]:
            assert r["reference"] == NORMAL_SENTENCE
        else:
            assert r["reference"].count(".") == len(set(row["nih_finding_labels"]))
        if "Effusion" in row["nih_finding_labels"]:
            assert "Pleural effusion." in r["reference"]
    for r in records("nih-reports"):  # absolute paths when the manifest lives elsewhere
        assert Path(r["images"][0]).is_absolute() and Path(r["images"][0]).is_file()


def test_nih_bbox_boxes_and_labels(tmp_path):
    with open(DATA / SOURCES["nih-bbox"], encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(DATA / "nih_cxr14_bbox" / "data_entry_2017_v2020_subset.csv", encoding="utf-8", newline="") as f:
        entry_labels = {cells[0]: cells[1].split("|") for cells in list(csv.reader(f))[1:]}
    recs = {r["sample_id"]: r for r in import_samples("nih-bbox", DATA / "nih_cxr14_bbox", manifest_dir=tmp_path)}
    names = {row["image_index"] for row in rows}
    assert len(recs) == len(names)
    assert sum(len(r["lesions"]) for r in recs.values()) == len(rows)
    row = rows[0]
    r = recs[f"nihbbox-{Path(row['image_index']).stem}"]
    x, y, w, h = (float(row[k]) for k in "xywh")
    assert r["lesions"][0]["box"] == pytest.approx([x, y, x + w, y + h])
    assert r["lesions"][0]["label"] == row["finding_label"]
    assert r["images"] == [f"images/{row['image_index']}"]
    assert "images_note" in r["meta"]
    # the reference comes from all the image's NIH labels, not only the boxed ones
    multi = next(n for n in names if "Effusion" in entry_labels[n] and len(entry_labels[n]) > 1)
    ref = recs[f"nihbbox-{Path(multi).stem}"]["reference"]
    assert "Pleural effusion." in ref and ref.count(".") == len(entry_labels[multi])
    # --images-dir: the image is looked up there instead
    touch(tmp_path / "nih" / row["image_index"])
    found = next(x for x in import_samples("nih-bbox", DATA / SOURCES["nih-bbox"], images_dir=tmp_path / "nih",
                                           manifest_dir=tmp_path) if x["sample_id"] == r["sample_id"])
    assert found["images"] == [f"nih/{row['image_index']}"] and "images_note" not in found["meta"]


# ---------------------------------------------------------------- VQA


def test_vqa_rad_against_raw():
    raw = raw_jsonl(SOURCES["vqa-rad"])
    recs = by_id("vqa-rad")
    assert len(recs) == len(raw)
    for row in raw:
        r = recs[f"vqarad-{row['qid']}"]
        assert r["task"] == "vqa"
        assert r["prompt"] == row["question"].strip()
        assert r["reference"] == str(row["answer"]).strip()
        assert r["meta"]["answer_type"] == row["answer_type"].lower()
        assert r["meta"]["question_type"] == row["question_type"]
        assert len(r["images"]) == 1
        if row["image_png"]:
            assert Path(r["images"][0]) == DATA / "vqa_rad" / row["image_png"]
            assert Path(r["images"][0]).is_file()
        else:
            assert "images_note" in r["meta"]
    assert {r["meta"]["answer_type"] for r in recs.values()} == {"closed", "open"}


def test_slake_keeps_language_and_has_no_images(tmp_path):
    raw = raw_jsonl(SOURCES["slake"])
    recs = by_id("slake")
    assert len(recs) == len(raw)
    assert Counter(r["meta"]["language"] for r in recs.values()) == Counter(row["q_lang"] for row in raw)
    zh = next(row for row in raw if row["q_lang"] == "zh")
    r = recs[f"slake-{zh['qid']}"]
    assert r["prompt"] == zh["question"] and r["reference"] == zh["answer"].strip()
    assert r["images"] == [] and "images_note" in r["meta"]
    assert r["meta"]["answer_type"] in {"open", "closed"}
    with_dir = next(iter(import_samples("slake", DATA / SOURCES["slake"], images_dir=tmp_path / "slake",
                                        manifest_dir=tmp_path)))
    assert with_dir["images"] == [f"slake/{raw[0]['img_name']}"]


# ---------------------------------------------------------------- lesion datasets


def test_coco_boxes_converted_and_images_exist():
    with open(DATA / SOURCES["coco"], encoding="utf-8") as f:
        coco = json.load(f)
    recs = records("coco")
    assert len(recs) == len(coco["images"])
    names = {c["id"]: c["name"] for c in coco["categories"]}
    ann = coco["annotations"][0]
    image = next(im for im in coco["images"] if im["id"] == ann["image_id"])
    r = next(r for r in recs if r["meta"]["coco_image_id"] == image["id"])
    x, y, w, h = ann["bbox"]
    assert r["lesions"][0]["box"] == pytest.approx([x, y, x + w, y + h])
    assert r["lesions"][0]["label"] == names[ann["category_id"]]
    assert "tuberculosis" in r["reference"].lower() and r["reference"] != NO_TUBERCULOSIS_SENTENCE
    annotated = {a["image_id"] for a in coco["annotations"]}
    healthy = next(r for r in recs if r["meta"]["coco_image_id"] not in annotated)
    assert healthy["reference"] == NO_TUBERCULOSIS_SENTENCE and "lesions" not in healthy
    for r in recs:
        assert Path(r["images"][0]).is_file()
        assert Path(r["images"][0]).as_posix().endswith(r["meta"]["file_name"])


def test_chestx_det_boxes_polygons_and_labels(tmp_path):
    raw = raw_jsonl(SOURCES["chestx-det"])
    recs = by_id("chestx-det")
    assert len(recs) == len(raw)
    assert sum(len(r.get("lesions", [])) for r in recs.values()) == sum(len(row["syms"]) for row in raw)
    row = next(row for row in raw if len(set(row["syms"])) > 1)
    r = recs[f"chestxdet-{Path(row['file_name']).stem}"]
    assert [les["label"] for les in r["lesions"]] == row["syms"]
    assert [les["box"] for les in r["lesions"]] == row["boxes"]
    assert [les["polygon"] for les in r["lesions"]] == row["polygons"]
    assert r["reference"].count(".") == len(set(row["syms"]))
    assert r["images"] == [] and "images_note" in r["meta"]
    normal = next(row for row in raw if not row["syms"])
    assert recs[f"chestxdet-{Path(normal['file_name']).stem}"]["reference"] == NORMAL_SENTENCE
    with_dir = next(iter(import_samples("chestx-det", DATA / SOURCES["chestx-det"], images_dir=tmp_path / "cxd",
                                        manifest_dir=tmp_path)))
    assert with_dir["images"] == [f"cxd/{raw[0]['file_name']}"]


def test_labels_become_report_sentences():
    assert labels_to_report(["Effusion", "Cardiomegaly", "Effusion"]) == "Pleural effusion. Cardiomegaly."
    assert labels_to_report(["No Finding"]) == NORMAL_SENTENCE
    assert labels_to_report(["Pleural_Thickening"]) == labels_to_report(["Pleural Thickening"])
    assert labels_to_report(["Some New Label"]) == "Some new label."


# ---------------------------------------------------------------- write_manifest


def test_write_manifest_round_trip(tmp_path):
    slake = records("slake")
    recs = [r for r in slake if r["meta"]["language"] == "en"][:20] + [r for r in slake if r["meta"]["language"] == "zh"][:20]
    out = tmp_path / "sub" / "samples.jsonl"
    assert write_manifest(iter(recs), out) == len(recs)
    with open(out, encoding="utf-8") as f:
        content = f.read()
    assert [json.loads(line) for line in content.splitlines()] == recs
    assert recs[-1]["prompt"] in content  # Chinese questions written as text, not escapes
    assert os.listdir(out.parent) == ["samples.jsonl"]


def test_write_manifest_is_atomic(tmp_path):
    out = tmp_path / "samples.jsonl"
    out.write_text("previous manifest\n", encoding="utf-8")

    def failing():
        yield from records("coco")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_manifest(failing(), out)
    assert out.read_text(encoding="utf-8") == "previous manifest\n"
    assert os.listdir(tmp_path) == ["samples.jsonl"]
