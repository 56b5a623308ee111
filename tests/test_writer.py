"""The writer: atomic rank shards committed by markers, a merge that renames them into
``shard-NNNNN.parquet`` with the manifest last, and a resume (of a partition or of the merge) that
neither loses nor repeats a pair."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

import pipeline.run_state as run_state_mod
import pipeline.shard_merge as shard_merge_mod
import pipeline.writer as writer_mod
from pipeline.packing import SampleResult, pack_results
from pipeline.run_state import MERGE_PLAN, STATE_DIR, OutputError, open_run_state, partition_dir
from pipeline.shard_merge import _median_of_counts, merge_partitions
from pipeline.writer import PartitionWriter
from schemas.pair import PAIR_SCHEMA, REJECT_SCHEMA, Corruption, Edit, ImageRef, PairRecord, RejectRecord

REPO = Path(__file__).resolve().parents[1]
from data_paths import SHARED as DATA  # noqa: E402 - the full shared data, else the committed excerpts

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
            out.append(SampleResult(i + 1, [], [RejectRecord(sid, "text", "no_error", "nothing to fix", 0)], 1))
        else:
            out.append(SampleResult(i + 1, pairs, [], len(pairs)))
    return out


def _write_all(out: Path, results, shard_size=3, world_size=1, resume=False, per_add=1, **kw) -> dict:
    """What the runner does: line i goes to partition (i - 1) % world_size, ``per_add`` lines packed at
    a time; then the merge."""
    open_run_state(out, "k", world_size, resume)
    for rank in range(world_size):
        w = PartitionWriter(out, rank, world_size, shard_size, **kw)
        mine = [r for r in results if (r.line_no - 1) % world_size == rank]
        for i in range(0, len(mine), per_add):
            w.add(pack_results(mine[i : i + per_add]))
        w.close()
    return merge_partitions(out, world_size, {"tokenizer": "t", "config": {}})


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
    assert manifest["shards"] == [f"shard-{i:05d}.parquet" for i in range(len(sizes))]
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


def test_partitions_are_merged_rank_by_rank(tmp_path, results):
    out = tmp_path / "run"
    manifest = _write_all(out, results, shard_size=2, world_size=3)
    rows = _pair_table(out)
    expected = [p.pair_id for rank in range(3) for r in results if (r.line_no - 1) % 3 == rank for p in r.pairs]
    assert [r["pair_id"] for r in rows] == expected
    assert manifest["shards"] == [f"shard-{i:05d}.parquet" for i in range(len(manifest["shards"]))]
    assert manifest["counts"]["samples"] == 11 and not (out / STATE_DIR).exists()
    single = tmp_path / "single"
    _write_all(single, results, shard_size=2)
    assert sorted(rows, key=lambda r: r["pair_id"]) == sorted(_pair_table(single), key=lambda r: r["pair_id"])


def test_empty_rejects_ledger_is_a_valid_table(tmp_path, results):
    out = tmp_path / "run"
    _write_all(out, [r for r in results if not r.rejects])
    t = pq.read_table(out / "rejects.parquet")
    assert t.num_rows == 0 and t.schema.equals(REJECT_SCHEMA, check_metadata=False)


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
    _write_all(a, results, world_size=2)
    _write_all(b, results, world_size=2)
    for name in ["rejects.parquet", *json.loads((a / "manifest.json").read_text())["shards"]]:
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_crash_after_some_shards_then_resume(tmp_path, results):
    clean = tmp_path / "clean"
    _write_all(clean, results, shard_size=3)

    out = tmp_path / "crashed"
    open_run_state(out, "k", 1, resume=False)
    w = PartitionWriter(out, 0, 1, 3)
    for r in results[:8]:
        w.add(pack_results([r]))  # commits chunks as it goes; the last samples stay in the buffer
    committed = w.last_line
    part = partition_dir(out, 0, 1)
    markers = sorted(p.name for p in part.glob("chunk-*.json"))
    assert markers and w.shards < 8
    # the crash: a shard renamed but its marker never landed, and a half-written temp file
    (part / f"shard-r00000-{w.shards:05d}.parquet").write_bytes(b"partial")
    (part / "chunk-00009.json.tmp").write_bytes(b"partial")
    del w
    assert not (out / "manifest.json").exists()

    with pytest.raises(OutputError, match="--resume"):
        open_run_state(out, "k", 1, resume=False)
    with pytest.raises(OutputError, match="different configuration"):
        open_run_state(out, "other", 1, resume=True)
    open_run_state(out, "k", 1, resume=True)
    w2 = PartitionWriter(out, 0, 1, 3)
    last_marker = json.loads((part / markers[-1]).read_text())
    assert w2.last_line == last_marker["last_line"] < committed  # the buffered samples were never committed
    assert not list(part.glob("*.tmp")) and len(list(part.glob("shard-r*.parquet"))) == w2.shards
    for r in results:  # the runner re-reads the lines after the last commit; earlier ones are no-ops
        w2.add(pack_results([r]))
    w2.close()
    manifest = merge_partitions(out, 1, {"tokenizer": "t", "config": {}})
    assert _pair_table(out) == _pair_table(clean)
    ids = [r["pair_id"] for r in _pair_table(out)]
    assert len(ids) == len(set(ids))
    assert manifest["counts"] == json.loads((clean / "manifest.json").read_text())["counts"]
    assert pq.read_table(out / "rejects.parquet").equals(pq.read_table(clean / "rejects.parquet"))
    for s in manifest["shards"]:  # the redone chunks are byte-identical to the uninterrupted run's
        assert (out / s).read_bytes() == (clean / s).read_bytes()
    assert not (out / STATE_DIR).exists()


def test_merge_killed_midway_is_finished_by_a_rerun(tmp_path, results, monkeypatch):
    clean = tmp_path / "clean"
    _write_all(clean, results, shard_size=2, world_size=2)
    out = tmp_path / "run"
    open_run_state(out, "k", 2, resume=False)
    for rank in range(2):
        w = PartitionWriter(out, rank, 2, 2)
        for r in results:
            if (r.line_no - 1) % 2 == rank:
                w.add(pack_results([r]))
        w.close()
    real_replace = shard_merge_mod.os.replace
    calls = {"n": 0}

    def dying_replace(src, dst):
        if str(dst).endswith(".parquet") and "shard-" in str(dst) and "-r" not in Path(dst).name:
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt  # killed after two shards were renamed
        return real_replace(src, dst)

    monkeypatch.setattr(shard_merge_mod.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        merge_partitions(out, 2, {"tokenizer": "t", "config": {}})
    assert (out / STATE_DIR / MERGE_PLAN).exists() and not (out / "manifest.json").exists()
    assert len(list(out.glob("shard-*.parquet"))) == 2
    monkeypatch.setattr(shard_merge_mod.os, "replace", real_replace)
    manifest = merge_partitions(out, 2, {"tokenizer": "t", "config": {}})
    assert manifest["shards"] == json.loads((clean / "manifest.json").read_text())["shards"]
    assert _pair_table(out) == _pair_table(clean)
    assert pq.read_table(out / "rejects.parquet").equals(pq.read_table(clean / "rejects.parquet"))


def test_merge_refuses_unfinished_partitions(tmp_path, results):
    out = tmp_path / "run"
    open_run_state(out, "k", 2, resume=False)
    w = PartitionWriter(out, 0, 2, 2)
    w.close()
    with pytest.raises(OutputError, match="partition 1 of 2 is not finished"):
        merge_partitions(out, 2, {})
    assert not (out / "manifest.json").exists()


def test_failed_rename_leaves_no_shard_and_a_retry_rewrites_it(tmp_path, results, monkeypatch):
    out = tmp_path / "run"
    open_run_state(out, "k", 1, resume=False)
    w = PartitionWriter(out, 0, 1, 100)
    for r in results[:3]:
        w.add(pack_results([r]))
    real_replace = run_state_mod.os.replace

    def failing_replace(src, dst):
        if str(dst).endswith(".parquet"):
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    part = partition_dir(out, 0, 1)
    monkeypatch.setattr(run_state_mod.os, "replace", failing_replace)
    with pytest.raises(OSError):
        w.flush()
    assert not list(part.glob("shard-*")) and not list(part.glob("chunk-*"))  # no temp file left either
    assert w.chunks == 0
    monkeypatch.setattr(run_state_mod.os, "replace", real_replace)
    w.flush()  # the retry writes the same shard name: indices advance only after the marker
    assert [p.name for p in part.glob("shard-*.parquet")] == ["shard-r00000-00000.parquet"]
    assert w.chunks == 1 and w.totals["samples"] == 3


def test_adding_a_line_twice_is_a_no_op(tmp_path, results):
    out = tmp_path / "run"
    open_run_state(out, "k", 1, resume=False)
    w = PartitionWriter(out, 0, 1, 2)
    for r in [results[0], results[1], results[0], results[2], results[1]]:
        w.add(pack_results([r]))
    w.close()
    manifest = merge_partitions(out, 1, {})
    assert manifest["counts"]["samples"] == 3
    assert [r["sample_id"] for r in _pair_table(out)] == [results[i].pairs[0].sample_id for i in range(3)]


def test_lines_packed_together_write_what_lines_packed_one_by_one_do(tmp_path, results):
    """A packed batch is cut into chunks between any two of its lines (here inside almost every batch),
    and a batch that repeats lines already added (a retried task) adds only the new ones."""
    one = tmp_path / "one"
    _write_all(one, results, shard_size=2)
    names = ["rejects.parquet", *json.loads((one / "manifest.json").read_text())["shards"]]
    for per_add in (3, 5, len(results)):
        out = tmp_path / f"by-{per_add}"
        _write_all(out, results, shard_size=2, per_add=per_add)
        assert all((out / n).read_bytes() == (one / n).read_bytes() for n in names), per_add
    out = tmp_path / "overlap"
    open_run_state(out, "k", 1, resume=False)
    w = PartitionWriter(out, 0, 1, 2)
    w.add(pack_results(results[:4]))
    w.add(pack_results(results[2:8]))
    w.add(pack_results(results[5:]))
    w.close()
    merge_partitions(out, 1, {})
    assert all((out / n).read_bytes() == (one / n).read_bytes() for n in names)


def test_complete_folder_is_not_overwritten_and_resume_is_a_no_op(tmp_path, results):
    out = tmp_path / "run"
    _write_all(out, results[:2])
    before = (out / "manifest.json").read_text()
    with pytest.raises(OutputError, match="complete run"):
        open_run_state(out, "k", 1, resume=False)
    assert open_run_state(out, "k", 1, resume=True).complete
    assert merge_partitions(out, 1, {}) == json.loads(before)
    assert (out / "manifest.json").read_text() == before


def test_unwritable_output_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="not writable"):
        open_run_state(blocker / "out", "k", 1, resume=False)


def test_a_shard_closes_early_when_its_rows_are_large(tmp_path, results):
    """Rows with images are big: a byte budget closes shards before shard_size rows."""
    out = tmp_path / "run"
    manifest = _write_all(out, results, shard_size=1000, max_shard_bytes=NIH_IMAGE.stat().st_size)
    sizes = [pq.read_metadata(out / s).num_rows for s in manifest["shards"]]
    with_image = sum(1 for r in results for p in r.pairs if p.images)
    assert len(sizes) == with_image + 1  # every row with the image closes its shard; the rest ride along
    assert sum(sizes) == manifest["counts"]["pairs"]


def test_reject_rows_alone_close_a_chunk(tmp_path, monkeypatch):
    """A manifest of rejects must not buffer without bound: reject rows close chunks too."""
    monkeypatch.setattr(writer_mod, "REJECT_FLUSH_ROWS", 4)
    out = tmp_path / "run"
    open_run_state(out, "k", 1, resume=False)
    w = PartitionWriter(out, 0, 1, 1000)
    for i in range(1, 11):
        w.add(pack_results([SampleResult(i, [], [RejectRecord(f"s{i}", "parse", "invalid_json", "bad", -1)])]))
    assert w.chunks == 2 and len(w._rejects) == 2
    w.close()
    manifest = merge_partitions(out, 1, {})
    assert manifest["shards"] == [] and pq.read_table(out / "rejects.parquet").num_rows == 10


def test_median_of_counts_is_the_median():
    import statistics
    from collections import Counter

    for values in ([0.5], [0.1, 0.9], [0.2, 0.2, 0.3, 0.7], [0.1, 0.4, 0.4, 0.5, 1.0]):
        assert _median_of_counts(Counter(values)) == pytest.approx(statistics.median(values))
    assert _median_of_counts(Counter()) is None


def test_feature_metadata_is_what_datasets_would_write():
    """The hand-written ``huggingface`` metadata: PAIR_SCHEMA's features with the image columns as images."""
    from datasets import Features, Image, List

    from pipeline.packing import pair_schema_metadata

    expected = Features.from_arrow_schema(PAIR_SCHEMA)
    expected["images"] = List(Image())
    expected["corrupted_images"] = List(Image())
    ours = json.loads(pair_schema_metadata()[b"huggingface"])["info"]["features"]
    assert Features.from_dict(ours) == expected
    assert Features.from_dict(ours).arrow_schema.types == PAIR_SCHEMA.types


def test_fast_rows_make_the_same_table_as_the_schema_helper(results):
    from pipeline.packing import pair_row
    from schemas.pair import pairs_table

    pairs = [p for r in results for p in r.pairs]
    assert any(p.images for p in pairs)
    fast = pa.Table.from_pylist([pair_row(p) for p in pairs], schema=PAIR_SCHEMA)
    assert fast.equals(pairs_table(pairs))


