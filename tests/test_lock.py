"""One writer per output folder: real ``build-pairs run`` processes race for one folder, a paused
holder is named by the refused writer, a SIGKILLed holder's folder resumes at once, and a partition
held by another process (an orphaned task) is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.importers import import_samples
from pipeline.lock import LockHeld, acquire, holder_info
from pipeline.run_state import STATE_DIR, partition_dir
from pipeline.runner import RunError, build_partition, plan_run, release_run, run

REPO = Path(__file__).resolve().parents[1]
CONFIG = "output:\n  shard_size: 4\nsampler:\n  batch_size: 4\n"
TRIALS = 10


def command(samples: Path, out: Path, config: Path, *extra: str) -> list[str]:
    exe = Path(sys.executable).with_name("build-pairs")
    head = [str(exe)] if exe.exists() else [sys.executable, "-m", "pipeline.cli"]
    return [*head, "run", "--samples", str(samples), "--out", str(out), "--config", str(config), "--no-progress",
            *extra]


def env(**extra: str) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}


@pytest.fixture(scope="module")
def world(tmp_path_factory, shared):
    """120 real IU samples, a config with small chunks, and the tables of one uninterrupted run."""
    folder = tmp_path_factory.mktemp("lock")
    records = []
    for r in import_samples("iu-generations", shared("iu_xray_model_generations")):
        records.append(json.dumps(r))
        if len(records) == 120:
            break
    samples = folder / "samples.jsonl"
    samples.write_text("\n".join(records) + "\n")
    config = folder / "config.yaml"
    config.write_text(CONFIG)
    clean = folder / "clean"
    run(samples, clean, load_config(config), progress=False)
    return samples, config, clean


def same_tables(a: Path, b: Path) -> bool:
    names = ["rejects.parquet", *json.loads((a / "manifest.json").read_text())["shards"]]
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in names) and \
        sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())


def start_paused(samples: Path, out: Path, config: Path, flag: Path, point: str, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen(command(samples, out, config, *extra), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=env(MEDPREF_PAUSE_AT=point, MEDPREF_PAUSE_FILE=str(flag)))
    deadline = time.monotonic() + 240
    while not flag.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended (rc {proc.returncode}) before {point}: {proc.communicate()[1][-2000:]}")
        assert time.monotonic() < deadline, f"never reached {point}"
        time.sleep(0.05)
    return proc


def test_a_held_folder_is_refused_naming_its_holder_and_a_killed_holder_resumes_at_once(world, tmp_path):
    samples, config, clean = world
    out, flag = tmp_path / "out", tmp_path / "paused"
    holder = start_paused(samples, out, config, flag, "chunk_committed:2")
    try:
        snapshot = sorted(str(p) for p in out.rglob("*"))
        for extra in ([], ["--resume"]):
            refused = subprocess.run(command(samples, out, config, *extra), cwd=REPO, capture_output=True,
                                     text=True, env=env(), timeout=300)
            assert refused.returncode == 2, refused.stderr
            line = refused.stderr.strip()
            assert "\n" not in line and line.startswith("build-pairs: error: output folder")
            assert f"pid {holder.pid}" in line and "--wait-for-lock" in line
        assert sorted(str(p) for p in out.rglob("*")) == snapshot  # the refused runs wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    assert holder.returncode == -signal.SIGKILL
    start = time.monotonic()
    resumed = subprocess.run(command(samples, out, config, "--resume"), cwd=REPO, capture_output=True, text=True,
                             env=env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert time.monotonic() - start < 120  # no stale lock to wait out
    assert same_tables(out, clean)
    assert not (out / STATE_DIR).exists()  # the lock went with the run's state


def test_wait_for_lock_waits_for_the_holder_then_finishes(world, tmp_path):
    samples, config, clean = world
    out, flag = tmp_path / "out", tmp_path / "paused"
    holder = start_paused(samples, out, config, flag, "chunk_committed:1")
    waiter = subprocess.Popen(command(samples, out, config, "--resume", "--wait-for-lock"), cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        time.sleep(8)
        assert waiter.poll() is None  # still waiting on the live holder
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    _, err = waiter.communicate(timeout=300)
    assert waiter.returncode == 0, err
    assert same_tables(out, clean)


@pytest.mark.slow
def test_two_concurrent_writers_never_both_write(world, tmp_path):
    """Ten trials: two runs started together on one fresh folder. The witness is independent of the
    lock: every chunk commit and merge step appends its pid to a trace file. In no trial do two
    processes write; the other one is refused before writing (or, had it started after the first
    finished, found the folder complete)."""
    samples, config, clean = world
    both_wrote, refused_trials = 0, 0
    for trial in range(TRIALS):
        out, trace = tmp_path / f"out-{trial}", tmp_path / f"trace-{trial}"
        procs = [subprocess.Popen(command(samples, out, config, "--resume"), cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env(MEDPREF_TRACE_FILE=str(trace)))
                 for _ in range(2)]
        results = {p.pid: (p.wait(timeout=300), *p.communicate()) for p in procs}
        writers = {int(line.split()[1]) for line in trace.read_text().splitlines()}
        both_wrote += len(writers) > 1
        assert len(writers) == 1, results
        (winner,) = writers
        loser_rc, _, loser_err = next(r for pid, r in results.items() if pid != winner)
        assert results[winner][0] == 0, results
        if loser_rc == 2:
            refused_trials += 1
            named = "is being written by host" in loser_err and f"pid {winner}" in loser_err
            # the holder may not have written its name yet when the loser looks: that is said too
            assert named or "has not written its name yet" in loser_err, loser_err
        else:
            assert loser_rc == 0, loser_err  # it came after the winner had finished: a no-op
        assert same_tables(out, clean)
    print(f"two concurrent writers: both wrote in {both_wrote} of {TRIALS} trials; "
          f"the second was refused while the first wrote in {refused_trials}")
    assert both_wrote == 0 and refused_trials >= 1


def test_a_partition_held_by_another_process_is_refused(world, tmp_path):
    """An orphaned partition task (its flow run died, it did not) keeps its partition's lock: the rerun's
    task for that partition fails with one line naming it, and builds it once the orphan is gone."""
    samples, config, clean = world
    out = tmp_path / "out"
    plan = plan_run(samples, out, load_config(config), partitions=2)
    lock_path = partition_dir(out, 1, 2) / "lock"
    code = ("import sys, time; from pipeline.lock import acquire, holder_info; "
            "l = acquire(sys.argv[1], holder_info('partition 1', 'orphan-flow-run')); print('held', flush=True); "
            "time.sleep(300)")
    orphan = subprocess.Popen([sys.executable, "-c", code, str(lock_path)], cwd=REPO, stdout=subprocess.PIPE,
                              text=True, env=env())
    try:
        assert orphan.stdout.readline().strip() == "held"
        build_partition(plan, 0)
        with pytest.raises(RunError, match=rf"partition 1 of 2 .* pid {orphan.pid} \(flow run orphan-flow-run\)"):
            build_partition(plan, 1)
        with pytest.raises(LockHeld):
            acquire(lock_path, holder_info("test"))
    finally:
        orphan.kill()
        orphan.communicate()
    build_partition(plan, 1)
    release_run(plan)
    summary = run(samples, out, load_config(config), resume=True, progress=False, partitions=2)
    assert summary.counts == json.loads((clean / "manifest.json").read_text())["counts"]
