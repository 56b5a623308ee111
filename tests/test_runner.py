"""The runner's mechanics: same input same tables (whatever the shard layout or partition count),
an unexpected exception is one reject, a crash then --resume gives the same tables, samplers, the
failures that stop a run. The full bad-input suite is tests/test_bad_input.py."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from data_paths import SHARED as DATA  # noqa: E402 - the full shared data, else the committed excerpts

import pipeline.process as process_mod
import pipeline.writer as writer_mod
from pipeline.config import load_config
from pipeline.importers import import_samples
from pipeline.manifest_reader import read_manifest
from pipeline.merge import run_markdown
from pipeline.runner import RunError, run
from pipeline.samplers import register_sampler

IU_DIR = DATA / "iu_xray_model_generations"
NIH_IMAGE = DATA / "nih_cxr14_txv_test_images" / "images" / "00000001_000.png"

pytestmark = pytest.mark.skipif(not IU_DIR.exists() or not NIH_IMAGE.exists(), reason="../shared/data is absent")


@pytest.fixture(scope="module")
def iu_records() -> list[dict]:
    records = []
    for r in import_samples("iu-generations", IU_DIR):
        records.append(r)
        if len(records) == 8:
            break
    return records


def dump(record: dict) -> bytes:
    return json.dumps(record).encode()


@pytest.fixture()
def messy_manifest(tmp_path, iu_records) -> Path:
    """Real IU and NIH samples mixed with each kind of broken line (line numbers in comments)."""
    folder = tmp_path / "manifest"
    (folder / "images").mkdir(parents=True)
    shutil.copyfile(NIH_IMAGE, folder / "images" / NIH_IMAGE.name)
    (folder / "images" / "not-a-png.png").write_text("this is text, not an image")
    a, b, c, d = iu_records[:4]
    lines = [
        dump({**a, "site": "indiana"}),                                            # 1 ok; unknown key -> meta
        b'{"sample_id": "broken", "task": "report", "reference": ',                # 2 invalid JSON
        b'{"sample_id": "latin1", "reference": "Heart size normal \xe9"}',         # 3 invalid UTF-8
        dump({**b, "responses": ["   ", b["responses"][0]]}),                      # 4 one empty response
        dump({k: v for k, v in c.items() if k != "reference"}),                    # 5 missing reference
        dump({**d, "task": "caption"}),                                            # 6 unknown task
        dump({**a, "reference": "duplicate"}),                                     # 7 duplicate id
        b"",                                                                       # 8 blank: skipped
        dump({"sample_id": "nih-1", "task": "report", "prompt": "Describe the findings.",   # 9 real image
              "images": ["images/00000001_000.png"], "reference": "Cardiomegaly. No pleural effusion.",
              "responses": ["The heart is normal in size. There is a small left pleural effusion. No pneumothorax. "
                            "The osseous structures are intact."],
              "lesions": [{"label": "Cardiomegaly", "box": [150, 250, 400, 420], "image": 0}]}),
        dump({**iu_records[4], "sample_id": "outside", "images": ["../../etc/hostname"]}),  # 10 outside
        dump({**iu_records[5], "sample_id": "unreadable", "images": ["images/not-a-png.png"]}),  # 11
        dump({**iu_records[6], "sample_id": "no-responses", "responses": []}),     # 12 nothing to pair
        dump({**iu_records[7], "responses": ["x" * 6000]}),                         # 13 too long (config)
    ]
    path = folder / "samples.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def run_dir(path: Path, out: Path, **overrides):
    cfg = load_config(None, {"text.max_response_chars": 5000, "output.shard_size": 2, "sampler.batch_size": 3,
                             **overrides})
    return run(path, out, cfg, progress=False)


def read_out(out: Path):
    manifest = json.loads((out / "manifest.json").read_text())
    pairs = pq.ParquetDataset([str(out / s) for s in manifest["shards"]]).read().to_pylist() if manifest["shards"] else []
    rejects = pq.read_table(out / "rejects.parquet").to_pylist()
    return manifest, pairs, rejects


def test_same_input_same_tables_and_seed_changes_ids(tmp_path, messy_manifest):
    run_dir(messy_manifest, tmp_path / "a")
    run_dir(messy_manifest, tmp_path / "b", **{"output.shard_size": 50})
    run_dir(messy_manifest, tmp_path / "c", seed=5)
    _, pa_, ra = read_out(tmp_path / "a")
    _, pb, rb = read_out(tmp_path / "b")
    _, pc, _ = read_out(tmp_path / "c")
    assert pa_ == pb and ra == rb  # the shard layout never changes a row
    assert pa_ and {p["pair_id"] for p in pa_}.isdisjoint(p["pair_id"] for p in pc)


def test_unexpected_exception_is_one_reject_not_a_crash(tmp_path, messy_manifest, iu_records, monkeypatch):
    real_make = process_mod.TextPairMaker.make
    poisoned = iu_records[0]["responses"][0]

    def make(self, response, *args, **kwargs):
        if response == poisoned:
            raise KeyError("simulated\nbug")
        return real_make(self, response, *args, **kwargs)

    monkeypatch.setattr(process_mod.TextPairMaker, "make", make)
    run_dir(messy_manifest, tmp_path / "out")
    manifest, pairs, rejects = read_out(tmp_path / "out")
    (internal,) = [r for r in rejects if r["reason"] == "internal_error"]
    assert internal["sample_id"] == iu_records[0]["sample_id"] and internal["stage"] == "text"
    assert internal["detail"] == "KeyError: 'simulated\\nbug'" and "\n" not in internal["detail"]
    assert any(p["sample_id"] == "nih-1" for p in pairs)


@pytest.mark.parametrize("partitions", [1, 3])
def test_crash_mid_run_then_resume_gives_the_same_tables(tmp_path, messy_manifest, monkeypatch, partitions):
    layout = {"output.shard_size": 1, "sampler.batch_size": 2}
    cfg = load_config(None, {"text.max_response_chars": 5000, **layout})
    run(messy_manifest, tmp_path / "clean", cfg, progress=False, partitions=partitions)
    real_flush = writer_mod.PartitionWriter.flush
    calls = {"n": 0}

    def crashing_flush(self):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # the process dies in the middle of a batch (one line per chunk)
        real_flush(self)

    monkeypatch.setattr(writer_mod.PartitionWriter, "flush", crashing_flush)
    with pytest.raises(KeyboardInterrupt):
        run(messy_manifest, tmp_path / "out", cfg, progress=False, partitions=partitions)
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert list((tmp_path / "out").rglob("shard-*.parquet"))
    monkeypatch.setattr(writer_mod.PartitionWriter, "flush", real_flush)
    with pytest.raises(RunError, match="--resume"):
        run(messy_manifest, tmp_path / "out", cfg, progress=False, partitions=partitions)
    with pytest.raises(RunError, match="partition count"):
        run(messy_manifest, tmp_path / "out", cfg, resume=True, progress=False, partitions=partitions + 1)
    summary = run(messy_manifest, tmp_path / "out", cfg, resume=True, progress=False, partitions=partitions)
    assert summary.counts["samples"] == 12
    clean, out = read_out(tmp_path / "clean"), read_out(tmp_path / "out")
    assert out[1] == clean[1] and out[2] == clean[2]
    assert out[0]["counts"] == clean[0]["counts"] and out[0]["shards"] == clean[0]["shards"]
    assert out[0]["stats"]["resumed"] and not clean[0]["stats"]["resumed"]
    stage_items = {k: v["items"] for k, v in out[0]["stats"]["stages"].items()}
    assert stage_items == {k: v["items"] for k, v in clean[0]["stats"]["stages"].items()}  # exact after resume
    assert stage_items["parse"] == 12
    fresh = tmp_path / "fresh"  # --resume on a folder with nothing to resume is a fresh run, and says so
    run(messy_manifest, fresh, cfg, resume=True, progress=False, partitions=partitions)
    assert read_out(fresh)[0]["stats"]["resumed"] is False
    ids = [p["pair_id"] for p in out[1]]
    assert len(ids) == len(set(ids))


def test_partitions_change_the_layout_not_the_rows(tmp_path, messy_manifest):
    one = run_dir(messy_manifest, tmp_path / "one")
    three = run(messy_manifest, tmp_path / "three",
                load_config(None, {"text.max_response_chars": 5000, "output.shard_size": 2, "sampler.batch_size": 3}),
                progress=False, partitions=3)
    m1, p1, r1 = read_out(tmp_path / "one")
    m3, p3, r3 = read_out(tmp_path / "three")
    assert one.counts == three.counts == m3["counts"]
    key = lambda r: json.dumps(r, sort_keys=True, default=repr)  # noqa: E731
    assert sorted(p1, key=key) == sorted(p3, key=key) and sorted(r1, key=key) == sorted(r3, key=key)
    assert m3["partitions"] == 3 and len(m3["stats"]["partitions"]) == 3
    # rank r holds lines r+1, r+1+3, ...: partition 0's pairs come first, and only they are from its lines
    owner_line: dict[str, int] = {}
    for i, raw in enumerate(messy_manifest.read_bytes().splitlines(), 1):
        try:
            owner_line.setdefault(json.loads(raw)["sample_id"], i)
        except (ValueError, KeyError, TypeError):
            continue
    n0 = m3["stats"]["partitions"][0]["pairs"]
    assert n0 and all((owner_line[p["sample_id"]] - 1) % 3 == 0 for p in p3[:n0])
    assert all((owner_line[p["sample_id"]] - 1) % 3 != 0 for p in p3[n0:])


def test_manifest_stats_count_and_time_every_stage(tmp_path, messy_manifest):
    run_dir(messy_manifest, tmp_path / "out")
    manifest, pairs, rejects = read_out(tmp_path / "out")
    stages = manifest["stats"]["stages"]
    assert stages["scan"]["items"] == len(messy_manifest.read_bytes().splitlines())
    assert stages["parse"]["items"] == manifest["counts"]["samples"]  # every non-blank line
    assert stages["text"]["items"] >= len(pairs) and stages["tokens"]["items"] == len(pairs)
    assert stages["image_load"]["items"] >= 1 and stages["write"]["items"] == len(pairs)
    assert all(v["seconds"] >= 0 for v in stages.values()) and stages["text"]["seconds"] > 0
    assert manifest["stats"]["seconds"]["text"] == stages["text"]["seconds"]  # the older flat view stays
    assert manifest["stats"]["partitions"][0]["peak_rss_mb"] > 0
    assert manifest["source"]["sha256"] == hashlib.sha256(messy_manifest.read_bytes()).hexdigest()
    assert manifest["summary"]["rejects_by_stage"]["parse"] == sum(r["stage"] == "parse" for r in rejects)


def test_run_markdown_summarises_the_run(tmp_path, messy_manifest):
    run_dir(messy_manifest, tmp_path / "out")
    manifest, pairs, rejects = read_out(tmp_path / "out")
    md = run_markdown(manifest)
    assert f"| pairs | {len(pairs):,} |" in md and f"| rejects | {len(rejects):,} |" in md
    assert "| text |" in md and "| invalid\\_json | 1 |" in md


def test_samples_without_responses_go_to_the_sampler(tmp_path, iu_records):
    """A registered backend gets the samples lacking responses in batches; replay rejects them."""
    generated = {r["sample_id"]: r["responses"][0] for r in iu_records}
    normalized = {r["sample_id"]: r["meta"]["reference_report_normalized"] for r in iu_records}
    calls = []

    class LookupSampler:  # the IU model's real generations, served as if sampled
        name = "lookup-test"

        def __init__(self, config):
            self.config = config

        def sample(self, samples, n, seed):
            calls.append(([s.sample_id for s in samples], n, seed))
            return [[generated[s.sample_id], normalized[s.sample_id]][:n] for s in samples]

    register_sampler("lookup-test", LookupSampler)
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "responses"}) + "\n" for r in iu_records[:5]))
    run_dir(path, tmp_path / "out", **{"sampler.name": "lookup-test", "sampler.num_samples": 2,
                                       "sampler.model": "iu-qwen", "sampler.batch_size": 2, "seed": 9})
    manifest, pairs, rejects = read_out(tmp_path / "out")
    assert [len(ids) for ids, _, _ in calls] == [2, 2, 1] and all(c[1:] == (2, 9) for c in calls)
    assert manifest["counts"]["responses"] == 10 and len(pairs) + len(rejects) == 10
    for p in pairs:
        meta = json.loads(p["meta"])
        assert (meta["sampler"], meta["model"], meta["sampling"]["num_samples"]) == ("lookup-test", "iu-qwen", 2)

    run_dir(path, tmp_path / "replay")
    _, pairs, rejects = read_out(tmp_path / "replay")
    assert pairs == [] and [r["reason"] for r in rejects] == ["no_responses"] * 5


def test_cannot_run_at_all_raises_and_leaves_no_manifest(tmp_path, messy_manifest):
    with pytest.raises(RunError, match="cannot read manifest"):
        run_dir(tmp_path / "missing.jsonl", tmp_path / "out1")
    assert not (tmp_path / "out1").exists()
    with pytest.raises(RunError, match="it is a folder"):
        run_dir(tmp_path, tmp_path / "out2")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunError, match="not writable"):
        run_dir(messy_manifest, blocker / "out")


def test_byte_order_mark_and_crlf_lines_parse(tmp_path, iu_records):
    path = tmp_path / "samples.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(dump(r) for r in iu_records[:2]) + b"\r\n")
    items = list(read_manifest(path))
    assert [it.sample.sample_id for it in items] == [r["sample_id"] for r in iu_records[:2]]
    assert items[1].sample.reference == iu_records[1]["reference"]
