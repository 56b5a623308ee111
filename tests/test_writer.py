"""The shard writer: atomic shards, the manifest last, and a resume that neither loses nor repeats a pair."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

import pipeline.writer as writer_mod
from pipeline.writer import STATE_DIR, OutputError, SampleResult, ShardWriter
from schemas.pair import PAIR_SCHEMA, REJECT_SCHEMA, Corruption, Edit, ImageRef, PairRecord, RejectRecord

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IU = DATA / "iu_xray_model_generations" / "generations.jsonl"
NIH_IMAGE = DATA / "nih_cxr14_txv_test_images" / "images" / "00000001_000.png"

pytestmark = pytest.mark.skipif(not IU.exists() or not NIH_IMAGE.exists(), reason="../shared/data is absent")


def _records(n: int) -> list[dict]:
    rows = []
    with open(IU, encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) == n:
                break
    return rows


@pytest.fixture(scope="module")
def results() -> list[SampleResult]:
    """Eleven samples of real IU text (one with two pairs, one with only a reject) and one real NIH image.

    The writer does not judge pairs, so the 'edit' here is simply the first sentence swapped."""
    tok = Tokenizer.from_file(str(REPO / "medpref_data" / "tokenizer" / "tokenizer.json"))
    png = NIH_IMAGE.read_bytes()
    out = []
    for i, row in enumerate(_records(11)):
        sid = f"iu-{row['id']}"
        rejected, chosen = row["generated_report"], row["reference_report"]
        pairs = []
        for k in range(2 if i == 4 else 1):
            c_ids, r_ids = tok.encode(chosen, add_special_tokens=False).ids, tok.encode(rejected, add_special_tokens=False).ids
            pairs.append(PairRecord(
                pair_id=f"{sid}-{k}", sample_id=sid, task="report", prompt="Describe the findings.",
                images=[ImageRef(png, "images/00000001_000.png")] if i % 3 == 0 else [],
                corrupted_images=[], corruption=Corruption(seed=i, reason="text-only sample" if i % 3 else None),
                chosen=chosen, rejected=rejected, on_policy="rejected", reference=chosen,
                edits=[Edit(0, 10, 0, 12, "false_finding", rejected[:10], chosen[:12])],
                error_types=["false_finding"], chosen_input_ids=c_ids, rejected_input_ids=r_ids,
                chosen_token_mask=[1] * 3 + [0] * (len(c_ids) - 3), rejected_token_mask=[1] * 2 + [0] * (len(r_ids) - 2),
                meta=json.dumps({"uid": row["uid"]}),
            ))
        if i == 7:
            out.append(SampleResult(f"id:{sid}", [], [RejectRecord(sid, "text", "no_error", "nothing to fix", 0)], 1))
        else:
            out.append(SampleResult(f"id:{sid}", pairs, [], len(pairs)))
    return out


def _write_all(out: Path, results, shard_size=3, resume=False) -> dict:
    w = ShardWriter(out, shard_size, run_key="k", resume=resume)
    for r in results:
        w.add(r)
    return w.finalize({"tokenizer": "t", "config": {}})


def _pair_table(out: Path):
    manifest = json.loads((out / "manifest.json").read_text())
    return pq.ParquetDataset([str(out / s) for s in manifest["shards"]]).read().to_pylist()


def test_shards_rejects_and_manifest(tmp_path, results):
    out = tmp_path / "run"
    manifest = _write_all(out, results, shard_size=3)
    n_pairs = sum(len(r.pairs) for r in results)
    assert manifest["counts"] == {"samples": 11, "responses": n_pairs + 1, "pairs": n_pairs, "rejects": 1}
    sizes = [pq.read_metadata(out / s).num_rows for s in manifest["shards"]]
    assert sum(sizes) == n_pairs and all(s >= 3 for s in sizes[:-1]) and max(sizes) <= 4  # a sample never straddles
    assert sorted(p.name for p in out.iterdir()) == sorted([*manifest["shards"], "rejects.parquet", "manifest.json"])
    for s in manifest["shards"]:
        f = pq.ParquetFile(out / s)
        assert f.schema_arrow.equals(PAIR_SCHEMA, check_metadata=False)
        assert f.metadata.row_group(0).column(0).compression == "ZSTD"
    rejects = pq.read_table(out / "rejects.parquet")
    assert rejects.schema.equals(REJECT_SCHEMA, check_metadata=False)
    assert rejects.to_pylist() == [{"sample_id": results[7].rejects[0].sample_id, "response_index": 0,
                                    "stage": "text", "reason": "no_error", "detail": "nothing to fix"}]
    ids = [r["pair_id"] for r in _pair_table(out)]
    assert ids == [p.pair_id for r in results for p in r.pairs]
    assert manifest["summary"]["rejects_by_reason"] == {"no_error": 1}
    assert manifest["summary"]["error_types"] == {"false_finding": n_pairs}


def test_shards_load_with_datasets_and_images_decode(tmp_path, results):
    from datasets import load_dataset

    out = tmp_path / "run"
    _write_all(out, results, shard_size=4)
    ds = load_dataset("parquet", data_files=str(out / "shard-*.parquet"), split="train",
                      cache_dir=str(tmp_path / "hf-cache"))
    expected = [p for r in results for p in r.pairs]
    assert ds.num_rows == len(expected)
    assert ds["pair_id"] == [p.pair_id for p in expected]
    row = ds[0]
    assert row["images"][0].size == (512, 512)  # the real NIH test image, decoded by datasets as a PIL image
    assert ds[1]["images"] == []
    assert row["chosen_token_mask"] == expected[0].chosen_token_mask
    assert len(row["chosen_input_ids"]) == len(row["chosen_token_mask"])
    assert row["edits"][0]["before"] == expected[0].rejected[:10]


def test_identical_input_gives_identical_files(tmp_path, results):
    a, b = tmp_path / "a", tmp_path / "b"
    _write_all(a, results)
    _write_all(b, results)
    for name in ["rejects.parquet", *json.loads((a / "manifest.json").read_text())["shards"]]:
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_crash_after_some_shards_then_resume(tmp_path, results):
    clean = tmp_path / "clean"
    _write_all(clean, results, shard_size=3)

    out = tmp_path / "crashed"
    w = ShardWriter(out, 3, run_key="k")
    for r in results[:8]:
        w.add(r)  # commits chunks as it goes; the last samples stay in the buffer
    committed = set(w.completed)
    assert 0 < len(committed) < 8
    # the crash: a shard written but its marker never landed, and a half-written temp file
    (out / "shard-00009.parquet").write_bytes(b"partial")
    (out / "shard-00002.parquet.tmp").write_bytes(b"partial")
    del w
    assert not (out / "manifest.json").exists() and (out / STATE_DIR).is_dir()

    with pytest.raises(OutputError, match="--resume"):
        ShardWriter(out, 3, run_key="k")
    with pytest.raises(OutputError, match="different configuration"):
        ShardWriter(out, 3, run_key="other", resume=True)

    w2 = ShardWriter(out, 3, run_key="k", resume=True)
    assert w2.completed == committed
    assert not (out / "shard-00009.parquet").exists() and not (out / "shard-00002.parquet.tmp").exists()
    for r in results:  # the runner re-reads everything; committed samples are skipped
        w2.add(r)
    manifest = w2.finalize({"tokenizer": "t", "config": {}})
    assert _pair_table(out) == _pair_table(clean)
    ids = [r["pair_id"] for r in _pair_table(out)]
    assert len(ids) == len(set(ids))
    assert manifest["counts"] == json.loads((clean / "manifest.json").read_text())["counts"]
    assert pq.read_table(out / "rejects.parquet").equals(pq.read_table(clean / "rejects.parquet"))
    assert not (out / STATE_DIR).exists()


def test_failed_rename_leaves_no_shard_and_a_retry_rewrites_it(tmp_path, results, monkeypatch):
    out = tmp_path / "run"
    w = ShardWriter(out, 100, run_key="k")
    for r in results[:3]:
        w.add(r)
    real_replace = writer_mod.os.replace

    def failing_replace(src, dst):
        if str(dst).endswith(".parquet"):
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(writer_mod.os, "replace", failing_replace)
    with pytest.raises(OSError):
        w.flush()
    assert not list(out.glob("shard-*.parquet")) and not list((out / STATE_DIR).glob("chunk-*.json"))
    assert w.completed == set()
    monkeypatch.setattr(writer_mod.os, "replace", real_replace)
    w.flush()  # the retry writes the same shard name: indices advance only after the marker
    assert [p.name for p in out.glob("shard-*.parquet")] == ["shard-00000.parquet"]
    assert w.completed == {r.key for r in results[:3]}


def test_adding_a_sample_twice_is_a_no_op(tmp_path, results):
    out = tmp_path / "run"
    w = ShardWriter(out, 2, run_key="k")
    for r in [results[0], results[1], results[0], results[2], results[1]]:
        w.add(r)
    manifest = w.finalize({})
    assert manifest["counts"]["samples"] == 3
    assert [r["sample_id"] for r in _pair_table(out)] == [results[i].pairs[0].sample_id for i in range(3)]


def test_complete_folder_is_not_overwritten_and_resume_is_a_no_op(tmp_path, results):
    out = tmp_path / "run"
    _write_all(out, results[:2])
    before = (out / "manifest.json").read_text()
    with pytest.raises(OutputError, match="complete run"):
        ShardWriter(out, 3, run_key="k")
    w = ShardWriter(out, 3, run_key="k", resume=True)
    assert w.complete and w.finalize({}) == json.loads(before)
    assert (out / "manifest.json").read_text() == before


def test_unwritable_output_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="not writable"):
        ShardWriter(blocker / "out", 3, run_key="k")


def test_a_shard_closes_early_when_its_rows_are_large(tmp_path, results):
    """Rows with images are big: a byte budget closes shards before shard_size rows."""
    out = tmp_path / "run"
    w = ShardWriter(out, 1000, run_key="k", max_shard_bytes=NIH_IMAGE.stat().st_size)
    for r in results:
        w.add(r)
    manifest = w.finalize({})
    sizes = [pq.read_metadata(out / s).num_rows for s in manifest["shards"]]
    with_image = sum(1 for r in results for p in r.pairs if p.images)
    assert len(sizes) == with_image + 1  # every row with the image closes its shard; the rest ride along
    assert sum(sizes) == manifest["counts"]["pairs"]


def test_feature_metadata_is_what_datasets_would_write():
    """The hand-written ``huggingface`` metadata: PAIR_SCHEMA's features with the image columns as images."""
    from datasets import Features, Image, List

    from pipeline.writer import pair_schema_metadata

    expected = Features.from_arrow_schema(PAIR_SCHEMA)
    expected["images"] = List(Image())
    expected["corrupted_images"] = List(Image())
    ours = json.loads(pair_schema_metadata()[b"huggingface"])["info"]["features"]
    assert Features.from_dict(ours) == expected
    assert Features.from_dict(ours).arrow_schema.types == PAIR_SCHEMA.types
