"""SIGKILL of a Prefect worker in the middle of a Dask build, on a real loopback server: the flow-run
process and its Dask workers are gone within 10 s, the zombie automation marks the run Crashed within
5 minutes, and the resumed folder equals an uninterrupted build byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from prefect_server import BIN, alive, descendants, loopback_server

from pipeline.config import load_config
from pipeline.runner import run

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def flow_run_state(env: dict, flow_run_id: str) -> str:
    code = ("import sys; from uuid import UUID; from prefect.client.orchestration import get_client\n"
            "with get_client(sync_client=True) as c: print(c.read_flow_run(UUID(sys.argv[1])).state.type.value)")
    return subprocess.run([str(BIN / "python"), "-c", code, flow_run_id], env=env, capture_output=True, text=True,
                          timeout=60, check=True).stdout.strip()


def test_sigkilled_worker_takes_its_run_with_it_and_the_run_is_crashed(tmp_path, shared):
    samples = tmp_path / "iu.jsonl"
    subprocess.run([str(BIN / "build-pairs"), "import", "iu-generations", str(shared("iu_xray_model_generations")),
                    "--out", str(samples)], check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    clean = tmp_path / "clean"
    run(samples, clean, load_config(REPO / "configs" / "default.yaml"), progress=False, partitions=4)
    out = tmp_path / "out-4"
    with loopback_server(tmp_path / "prefect") as (_, env):
        env = {**env, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}

        def prefect(*args: str) -> str:
            done = subprocess.run([str(BIN / "prefect"), *args], cwd=REPO, env=env, capture_output=True, text=True,
                                  timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        prefect("work-pool", "create", "medpref", "--type", "process")
        prefect("variable", "set", "medpref_repo", str(REPO))
        prefect("--no-prompt", "deploy", "--all")
        subprocess.run([str(BIN / "python"), "-m", "flows.zombies", "install"], cwd=REPO, env=env, check=True,
                       capture_output=True, timeout=120)
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "medpref"], cwd=REPO, env=env,
                                  stdout=open(tmp_path / "worker.log", "wb"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            params = {"params": {"samples": str(samples), "out": str(tmp_path / "out-{partitions}")}}
            created = prefect("deployment", "run", "build-pairs/scale-out", "--params", json.dumps(params))
            flow_run_id = next(line.split("UUID:")[1].strip() for line in created.splitlines() if "UUID:" in line)
            deadline = time.monotonic() + 300
            while not list((out / ".medpref-progress").glob("part-*/chunk-*.json")):  # partitions are writing
                assert time.monotonic() < deadline and worker.poll() is None, (tmp_path / "worker.log").read_text()
                time.sleep(0.5)
            tree = descendants(worker.pid)
            assert len(tree) >= 3, tree  # the flow-run process and its Dask worker processes
            worker.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            worker.wait()
            while any(alive(p) for p in tree) and time.monotonic() - killed < 30:
                time.sleep(0.2)
            gone_after = time.monotonic() - killed
            print(f"worker SIGKILLed: its {len(tree)} processes gone after {gone_after:.1f} s")
            assert not any(alive(p) for p in tree) and gone_after < 10
            state = flow_run_state(env, flow_run_id)
            while state == "RUNNING" and time.monotonic() - killed < 300:
                time.sleep(5)
                state = flow_run_state(env, flow_run_id)
            crashed_after = time.monotonic() - killed
            print(f"flow run {state} {crashed_after:.0f} s after the kill")
            assert state == "CRASHED" and crashed_after < 300
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
    assert not (out / "manifest.json").exists()
    resumed = subprocess.run([str(BIN / "build-pairs"), "run", "--samples", str(samples), "--out", str(out),
                              "--config", str(REPO / "configs" / "default.yaml"), "--partitions", "4", "--resume",
                              "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=600,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert resumed.returncode == 0, resumed.stderr  # no lock left behind by the dead processes
    names = ["rejects.parquet", *json.loads((clean / "manifest.json").read_text())["shards"]]
    assert all((out / n).read_bytes() == (clean / n).read_bytes() for n in names)
