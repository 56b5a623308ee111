"""The Prefect flow: the same tables as the command line, partitions on a real Dask cluster on
loopback, cached partitions on a re-run, retries only for transient failures, a markdown artifact,
and the scheduled deployment registered with a (test) Prefect server."""

from __future__ import annotations

import ast
import errno
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "medpref_data" / "sample" / "samples.jsonl"
from data_paths import SHARED  # noqa: E402 - the full shared data, else the committed excerpts

IU_DIR = SHARED / "iu_xray_model_generations"




def tables(out: Path):
    manifest = json.loads((out / "manifest.json").read_text())
    pairs = pq.ParquetDataset([str(out / s) for s in manifest["shards"]]).read()
    return manifest, pairs, pq.read_table(out / "rejects.parquet")


def cli_run(out: Path, config: Path, partitions: int, samples: Path = SAMPLE):
    from typer.testing import CliRunner

    from pipeline.cli import app

    result = CliRunner().invoke(app, ["run", "--samples", str(samples), "--out", str(out), "--config", str(config),
                                      "--partitions", str(partitions), "--no-progress"])
    assert result.exit_code == 0, result.output
    return tables(out)


def task_states(flow_run_id) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name: r.state.name for r in runs}


@pytest.fixture()
def config(tmp_path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("output:\n  shard_size: 3\nsampler:\n  batch_size: 3\n")
    return path


@pytest.mark.slow
def test_flow_writes_the_same_tables_as_the_cli_and_reuses_cached_partitions(prefect_harness, tmp_path, config,
                                                                            monkeypatch):
    from prefect.artifacts import Artifact

    import flows.build_pairs as fb

    cli_manifest, cli_pairs, cli_rejects = cli_run(tmp_path / "cli", config, partitions=2)
    params = fb.BuildPairsParams(samples=str(SAMPLE), out=str(tmp_path / "flow-{manifest_sha}"),
                                 config_path=str(config), partitions=2)

    # the first attempt dies in the merge, after both partitions finished
    real_merge = fb.merge_run
    monkeypatch.setattr(fb, "merge_run", lambda plan: (_ for _ in ()).throw(RuntimeError("merge died")))
    state = fb.build_pairs(params, return_state=True)
    assert state.is_failed()
    sha = json.loads((tmp_path / "cli" / "manifest.json").read_text())["source"]["sha256"]
    out = tmp_path / f"flow-{sha[:12]}"
    assert not (out / "manifest.json").exists()
    first = task_states(state.state_details.flow_run_id)
    assert first["build-partition-0"] == first["build-partition-1"] == "Completed"

    # the re-run resumes: both partitions come from Prefect's cache (same manifest, config, run), the merge runs
    monkeypatch.setattr(fb, "merge_run", real_merge)
    state = fb.build_pairs(params.model_copy(update={"resume": True}), return_state=True)
    returned = state.result()
    second = task_states(state.state_details.flow_run_id)
    assert second["build-partition-0"] == second["build-partition-1"] == "Cached", second

    flow_manifest, flow_pairs, flow_rejects = tables(out)
    assert returned["counts"] == flow_manifest["counts"] == cli_manifest["counts"]
    assert flow_manifest["shards"] == cli_manifest["shards"] and len(cli_manifest["shards"]) > 1
    assert cli_pairs.num_rows > 0 and flow_pairs.equals(cli_pairs) and flow_rejects.equals(cli_rejects)

    artifact = Artifact.get(fb.ARTIFACT_KEY, _sync=True)
    assert str(artifact.flow_run_id) == str(state.state_details.flow_run_id)
    assert f"| pairs | {flow_manifest['counts']['pairs']:,} |" in artifact.data and "| text |" in artifact.data
    # the HTML pair report is written and linked from the same flow run
    from flows.report_artifact import LINK_KEY

    assert (out / "report.html").stat().st_size > 0
    link = Artifact.get(LINK_KEY, _sync=True)
    assert str(link.flow_run_id) == str(state.state_details.flow_run_id) and "report.html" in link.data

    # a finished folder with resume is a no-op that reports the same counts
    again = fb.build_pairs(params.model_copy(update={"resume": True}))
    assert again["counts"] == cli_manifest["counts"]


@pytest.mark.slow
@pytest.mark.skipif(not IU_DIR.exists(), reason="../shared/data/iu_xray_model_generations is absent")
def test_partitions_run_on_a_local_dask_cluster(prefect_harness, tmp_path, config):
    """Four partitions on two single-threaded Dask worker processes on loopback: the same tables as
    ``build-pairs run --partitions 4``, built in the workers, not in this process."""
    from distributed import Client, LocalCluster

    from flows.build_pairs import BuildPairsParams, build_pairs
    from pipeline.importers import import_samples

    samples = tmp_path / "iu.jsonl"
    rows = list(import_samples("iu-generations", IU_DIR))[:80]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cli_manifest, cli_pairs, cli_rejects = cli_run(tmp_path / "cli", config, partitions=4, samples=samples)
    with LocalCluster(n_workers=2, processes=True, host="127.0.0.1", threads_per_worker=1,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        worker_pids = set(client.run(os.getpid).values())
        returned = build_pairs(BuildPairsParams(samples=str(samples), out=str(tmp_path / "dask"),
                                                config_path=str(config), partitions=4,
                                                dask_address=cluster.scheduler_address))
    manifest, pairs, rejects = tables(tmp_path / "dask")
    assert returned["counts"] == manifest["counts"] == cli_manifest["counts"]
    assert manifest["shards"] == cli_manifest["shards"]
    assert pairs.equals(cli_pairs) and rejects.equals(cli_rejects) and pairs.num_rows > 0
    ran_in = {p["worker"].rsplit(":", 1)[1] for p in manifest["stats"]["partitions"]}
    assert ran_in and ran_in <= {str(p) for p in worker_pids} and str(os.getpid()) not in ran_in


def test_only_transient_failures_are_retried():
    from flows.build_pairs import _is_transient
    from pipeline.samplers import TransientSamplerError

    assert _is_transient(TransientSamplerError("server dropped the connection"))
    assert _is_transient(ConnectionResetError())
    assert _is_transient(TimeoutError())
    assert not _is_transient(OSError(errno.ENOSPC, "No space left on device"))
    assert not _is_transient(PermissionError())
    assert not _is_transient(ValueError("a bug"))
    assert not _is_transient(None)


@pytest.mark.slow
def test_partition_task_retries_a_transient_failure_and_not_a_full_disk(prefect_harness, tmp_path, config,
                                                                        monkeypatch):
    import flows.build_pairs as fb
    from pipeline.runner import RunError

    calls = {"n": 0}
    real = fb.build_partition

    def flaky(plan, rank):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionResetError("the sampler server went away")
        return real(plan, rank)

    monkeypatch.setattr(fb, "partition_task", fb.partition_task.with_options(retry_delay_seconds=0))
    monkeypatch.setattr(fb, "build_partition", flaky)
    result = fb.build_pairs(fb.BuildPairsParams(samples=str(SAMPLE), out=str(tmp_path / "a"), config_path=str(config)))
    assert calls["n"] == 2 and result["counts"]["samples"] > 0

    calls["n"] = 0

    def full(plan, rank):
        calls["n"] += 1
        raise RunError("cannot write to 'x': No space left on device")

    monkeypatch.setattr(fb, "build_partition", full)
    state = fb.build_pairs(fb.BuildPairsParams(samples=str(SAMPLE), out=str(tmp_path / "b"), config_path=str(config)),
                           return_state=True)
    assert state.is_failed() and calls["n"] == 1 and not (tmp_path / "b" / "manifest.json").exists()


@pytest.mark.slow
def test_scheduled_deployment_registers_with_its_schedule(prefect_harness, tmp_path):
    """The served deployments, applied to the test server (not served: nothing is left running)."""
    from prefect.client.orchestration import get_client

    from flows.serve import BUILD_CRON, deployments

    build, train = deployments(str(SAMPLE), str(tmp_path / "pairs"), str(tmp_path / "runs"), partitions=2)
    ids = [build.apply(), train.apply()]
    with get_client(sync_client=True) as client:
        stored = [client.read_deployment(i) for i in ids]
        assert [d.name for d in stored] == ["served-nightly", "served-weekly"]
        assert stored[0].schedules[0].schedule.cron == BUILD_CRON and stored[0].schedules[0].active
        assert stored[0].parameters["params"]["partitions"] == 2
        assert stored[0].parameter_openapi_schema["required"] == ["params"]
        for i in ids:
            client.delete_deployment(i)


def test_only_flows_import_prefect():
    offenders = []
    for package in ("pipeline", "clinical", "editors", "corruptors", "schemas", "models", "report"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                if any(n == "prefect" or n.startswith("prefect.") for n in names):
                    offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_the_flow_refuses_a_held_folder_in_one_line_naming_the_holder(tmp_path):
    """``python -m flows.build_pairs`` on a folder another process writes: exit 2, one line on stderr
    naming that writer's host, pid and flow run; nothing written; no traceback."""
    import subprocess
    import sys

    from pipeline.run_state import STATE_DIR

    out = tmp_path / "out"
    lock = out / STATE_DIR / "lock"
    code = ("import sys, time; from pipeline.lock import acquire, holder_info; "
            "l = acquire(sys.argv[1], holder_info('run', 'the-other-flow-run')); print('held', flush=True); "
            "time.sleep(300)")
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    env.pop("PREFECT_API_URL", None)
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        done = subprocess.run([sys.executable, "-m", "flows.build_pairs", str(SAMPLE), str(out), "--resume"],
                              cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    finally:
        holder.kill()
        holder.communicate()
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert errors == [f"python -m flows.build_pairs: error: output folder {str(out)!r} is being written by host "
                      f"{os.uname().nodename} pid {holder.pid} (flow run the-other-flow-run) since "
                      f"{errors[0].split(' since ')[1]}"], done.stderr
    assert "Warning" not in done.stderr  # the NLP stack's warnings are filtered
    assert sorted(p.name for p in (out / STATE_DIR).iterdir()) == ["lock"]
