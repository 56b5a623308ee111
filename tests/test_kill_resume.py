"""Killed at any point, ``--resume`` finishes with the same tables: real ``build-pairs run``
subprocesses are SIGKILLed at named points (``pipeline.faults``: the process stops there and this test
kills it), one after another on the same output folder, and the final tables are compared with an
uninterrupted run's, byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.config import load_config
from pipeline.importers import import_samples
from pipeline.run_state import MERGE_PLAN, STATE_DIR
from pipeline.runner import run

REPO = Path(__file__).resolve().parents[1]
from data_paths import SHARED  # noqa: E402 - the full shared data, else the committed excerpts

IU_DIR = SHARED / "iu_xray_model_generations"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not IU_DIR.exists(), reason="../shared/data/iu_xray_model_generations is absent")]

PARTITIONS = 2
CONFIG = "output:\n  shard_size: 3\nsampler:\n  batch_size: 4\n"


def command(samples: Path, out: Path, config: Path, resume: bool) -> list[str]:
    exe = Path(sys.executable).with_name("build-pairs")
    head = [str(exe)] if exe.exists() else [sys.executable, "-m", "pipeline.cli"]
    return [*head, "run", "--samples", str(samples), "--out", str(out), "--config", str(config),
            "--partitions", str(PARTITIONS), "--no-progress", *(["--resume"] if resume else [])]


def kill_at(point: str, samples: Path, out: Path, config: Path, flag: Path, resume: bool) -> None:
    """Start a run, wait until it reaches ``point``, SIGKILL it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MEDPREF_PAUSE_AT": point,
           "MEDPREF_PAUSE_FILE": str(flag)}
    flag.unlink(missing_ok=True)
    proc = subprocess.Popen(command(samples, out, config, resume), cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while not flag.exists():
            if proc.poll() is not None:
                _, err = proc.communicate()
                raise AssertionError(f"run ended (rc {proc.returncode}) before {point}: {err.decode()[-2000:]}")
            assert time.monotonic() < deadline, f"never reached {point}"
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "manifest.json").exists()


def tables(out: Path):
    manifest = json.loads((out / "manifest.json").read_text())
    pairs = pq.ParquetDataset([str(out / s) for s in manifest["shards"]]).read().to_pylist()
    return manifest, pairs, pq.read_table(out / "rejects.parquet").to_pylist()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """60 real IU samples and a few bad lines, so there are rejects as well as pairs."""
    folder = tmp_path_factory.mktemp("kill")
    records = []
    for r in import_samples("iu-generations", IU_DIR):
        records.append(r)
        if len(records) == 60:
            break
    lines = [json.dumps(r) for r in records]
    lines[7] = '{"sample_id": "broken", '
    lines[20] = json.dumps({**records[20], "responses": [" "]})
    lines[33] = json.dumps({**records[2], "reference": "duplicate id"})
    path = folder / "samples.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_sigkill_at_every_stage_then_resume_gives_identical_tables(tmp_path, manifest):
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    clean = tmp_path / "clean"
    run(manifest, clean, load_config(config), progress=False, partitions=PARTITIONS)
    out, flag = tmp_path / "out", tmp_path / "paused"
    state = out / STATE_DIR
    part0 = state / f"part-00000-of-{PARTITIONS:05d}"

    # 1. the first shard file has appeared, its commit marker has not
    kill_at("shard_written:1", manifest, out, config, flag, resume=False)
    assert [p.name for p in part0.glob("shard-r*.parquet")] == ["shard-r00000-00000.parquet"]
    assert not list(part0.glob("chunk-*.json"))

    # 2. resumed, killed again after some more chunks were committed
    kill_at("chunk_committed:4", manifest, out, config, flag, resume=True)
    assert len(list(part0.glob("chunk-*.json"))) == 4

    # 3. resumed; every partition finished; killed while rejects.parquet is being written
    kill_at("rejects_tmp_written", manifest, out, config, flag, resume=True)
    assert (out / "rejects.parquet.tmp").exists() and not (out / "rejects.parquet").exists()
    assert all((p / "done.json").exists() for p in state.glob("part-*"))

    # 4. resumed; killed in the middle of renaming the shards into place
    kill_at("merge_renamed:2", manifest, out, config, flag, resume=True)
    assert (state / MERGE_PLAN).exists() and len(list(out.glob("shard-*.parquet"))) == 2

    # 5. resumed; killed just before manifest.json
    kill_at("before_manifest", manifest, out, config, flag, resume=True)
    expected = json.loads((clean / "manifest.json").read_text())["shards"]
    assert sorted(p.name for p in out.glob("shard-*.parquet")) == expected

    # 6. resumed to the end
    done = subprocess.run(command(manifest, out, config, resume=True), cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr
    m_clean, p_clean, r_clean = tables(clean)
    m_out, p_out, r_out = tables(out)
    assert m_out["counts"] == m_clean["counts"] and m_out["shards"] == m_clean["shards"]
    # the stage counts of a run killed five times (twice mid-partition, with batches of 4 and chunks of
    # 3 pairs that straddle each other) add up exactly to the uninterrupted run's
    items = {k: v["items"] for k, v in m_out["stats"]["stages"].items()}
    assert items == {k: v["items"] for k, v in m_clean["stats"]["stages"].items()}
    assert items["parse"] == 60 and items["scan"] == 60 and items["merge"] == m_out["counts"]["pairs"]
    assert m_out["stats"]["resumed"] is True and m_clean["stats"]["resumed"] is False
    assert p_out == p_clean and r_out == r_clean  # no pair lost, none duplicated, same order
    assert len({p["pair_id"] for p in p_out}) == len(p_out) == m_out["counts"]["pairs"] > 0
    assert {r["reason"] for r in r_out} >= {"invalid_json", "empty_response", "duplicate_sample_id"}
    for name in ["rejects.parquet", *m_out["shards"]]:
        assert (out / name).read_bytes() == (clean / name).read_bytes(), name
    assert sorted(p.name for p in out.iterdir()) == sorted([*m_out["shards"], "rejects.parquet", "manifest.json",
                                                           "README.md"])
    assert (out / "README.md").read_bytes() == (clean / "README.md").read_bytes()  # the dataset card
