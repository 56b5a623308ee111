"""``build-pairs run --workers N`` writes the same tables as one worker, and the folder's dataset card
makes ``datasets.load_dataset(OUT_DIR)`` load every shard with the card's features.

The manifest mixes real IU generations (text-only), NIH images with model reports (image pairs) and
bad lines (rejects), in small shards so that several chunks are in flight in the pool at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import pool
from pipeline.config import load_config
from pipeline.dataset_card import CARD
from pipeline.importers import import_samples
from pipeline.pool import effective_workers, machine_cores
from pipeline.runner import RunError, run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def manifest(shared, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("workers")
    rows = list(import_samples("iu-generations", shared("iu_xray_model_generations")))[:60]
    rows += list(import_samples("nih-reports", shared("nih_cxr14_rexrank_model_reports"), manifest_dir=folder))[:2]
    lines = [json.dumps(r) for r in rows]
    lines.insert(5, "{not json")
    lines.insert(20, json.dumps({**rows[0], "sample_id": "empty-1", "responses": ["   "]}))
    path = folder / "samples.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _tables(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.parquet"))}


def test_two_and_three_workers_write_the_same_bytes_as_one(manifest, tmp_path, monkeypatch):
    monkeypatch.setattr(pool, "TASK_LINES", 6)  # tasks of two batches, a dozen of them: many in flight
    cfg = load_config(None, {"output.shard_size": 7, "sampler.batch_size": 3})
    one = run(manifest, tmp_path / "w1", cfg, progress=False, workers=1)
    assert one.counts["pairs"] > 40 and one.counts["rejects"] >= 2 and len(one.shards) > 5
    reference = _tables(tmp_path / "w1")
    for n in (2, 3):
        summary = run(manifest, tmp_path / f"w{n}", cfg, progress=False, workers=n)
        assert summary.counts == one.counts
        assert _tables(tmp_path / f"w{n}") == reference, f"{n} workers wrote different tables"
    stats = json.loads((tmp_path / "w2" / "manifest.json").read_text())["stats"]
    # the work was done in the workers: the process stage counted every sample
    assert stats["stages"]["process"]["items"] == one.counts["samples"] - 1  # the bad JSON line never gets there


def test_workers_default_to_the_machine_and_stay_one_with_a_model_sampler():
    cfg = load_config(None, {})
    assert effective_workers(cfg, None) == machine_cores() >= 1
    assert effective_workers(cfg, 3) == 3
    assert effective_workers(load_config(None, {"sampler.name": "transformers", "sampler.model": "x"}), 4) == 1
    with pytest.raises(RunError, match="workers must be >= 1"):
        run("missing.jsonl", "out", cfg, workers=0)


_real_work = pool._work


def _work_that_dies(task):
    if any(item.line_no == 30 for batch in task for item in batch):
        os._exit(1)  # as if the kernel's OOM killer took the worker
    return _real_work(task)


def test_a_worker_that_dies_fails_the_run_and_resume_finishes_it(manifest, tmp_path, monkeypatch):
    cfg = load_config(None, {"output.shard_size": 7, "sampler.batch_size": 3})
    monkeypatch.setattr(pool, "TASK_LINES", 6)
    monkeypatch.setattr(pool, "_work", _work_that_dies)
    with pytest.raises(RunError, match="a worker process died.*--resume"):
        run(manifest, tmp_path / "out", cfg, progress=False, workers=2)
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert list((tmp_path / "out").rglob("chunk-*.json"))  # the lines before the dead task were committed
    monkeypatch.setattr(pool, "_work", _real_work)
    run(manifest, tmp_path / "out", cfg, resume=True, progress=False, workers=2)
    run(manifest, tmp_path / "clean", cfg, progress=False, workers=1)
    assert _tables(tmp_path / "out") == _tables(tmp_path / "clean")


def test_cli_workers_flag_and_resume_with_another_count(manifest, tmp_path):
    exe = [sys.executable, "-m", "pipeline.cli", "run", "--samples", str(manifest), "--no-progress"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.run([*exe, "--out", str(tmp_path / "a"), "--workers", "2"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    bad = subprocess.run([*exe, "--out", str(tmp_path / "b"), "--workers", "0"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--workers" in bad.stderr
    (tmp_path / "a" / CARD).unlink()  # a run killed after manifest.json: --resume writes the card
    again = subprocess.run([*exe, "--out", str(tmp_path / "a"), "--resume", "--workers", "1"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "a" / CARD).is_file()


def test_load_dataset_reads_the_folder_with_the_cards_features(manifest, tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "out"
    summary = run(manifest, out, load_config(None, {"output.shard_size": 9}), progress=False, workers=1)
    text = (out / CARD).read_text()
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["configs"][0]["data_files"][0]["path"] == "shard-*.parquet"
    assert header["license"] == "other"  # IU (CC BY-NC-ND) and NIH (CC0) mixed
    assert "cc-by-nc-nd-4.0" in text and "cc0-1.0" in text and "| iu_xray | " in text
    assert header["dataset_info"]["splits"][0]["num_examples"] == summary.counts["pairs"]
    for k, v in summary.error_types.items():
        assert f"| {k} | {v:,} |" in text

    ds = datasets.load_dataset(str(out))  # no arguments: the card says where the pairs are
    train = ds["train"]
    assert train.num_rows == summary.counts["pairs"] and len(summary.shards) > 3
    card_features = datasets.Features._from_yaml_list(header["dataset_info"]["features"])
    assert train.features == card_features
    assert isinstance(train.features["images"], datasets.List) and \
        isinstance(train.features["images"].feature, datasets.Image)
    with_images = [r for r in train if r["images"]]
    assert with_images and with_images[0]["images"][0].size[0] > 0  # decoded as PIL images
    rejects = datasets.load_dataset(str(out), "rejects")["train"]
    assert rejects.num_rows == summary.counts["rejects"] and "reason" in rejects.column_names


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc to find the worker processes")
def test_killing_the_run_takes_its_workers_down_and_resume_finishes(manifest, tmp_path):
    import signal
    import time

    cfg = tmp_path / "config.yaml"
    cfg.write_text("output:\n  shard_size: 5\n")
    flag = tmp_path / "paused"
    exe = [sys.executable, "-m", "pipeline.cli", "run", "--samples", str(manifest), "--out", str(tmp_path / "out"),
           "--config", str(cfg), "--no-progress", "--workers", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MEDPREF_PAUSE_AT": "chunk_committed:3",
           "MEDPREF_PAUSE_FILE": str(flag)}
    proc = subprocess.Popen(exe, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not flag.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert flag.exists(), proc.stderr.read().decode()[-2000:]
    workers = _children(proc.pid)
    assert len([w for w in workers if Path(f"/proc/{w}").exists()]) >= 2
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)  # would hang while an orphaned worker held the pipes
    deadline = time.time() + 10
    while any(Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text().split()[2]
              for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    alive = [w for w in workers if Path(f"/proc/{w}").exists()
             and Path(f"/proc/{w}/stat").read_text().split()[2] != "Z"]
    assert not alive, f"worker processes outlived the run: {alive}"
    env.pop("MEDPREF_PAUSE_AT")
    done = subprocess.run([*exe, "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    clean = run(manifest, tmp_path / "clean", load_config(cfg, {}), progress=False, workers=1)
    assert _tables(tmp_path / "out") == _tables(tmp_path / "clean") and clean.counts["pairs"] > 0
