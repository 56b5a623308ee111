"""The scheduled deployments, built but never served: ``flows/serve.py``'s objects and ``prefect.yaml``
name real flows, carry valid cron schedules, and their parameters pass the flows' own validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

REPO = Path(__file__).resolve().parents[1]


def test_served_deployments_have_schedules_and_typed_parameters(tmp_path):
    from flows.build_pairs import BuildPairsParams, build_pairs
    from flows.serve import BUILD_CRON, TRAIN_CRON, deployments
    from flows.train_pairs import train_pairs

    build, train = deployments("data/samples.jsonl", "data/pairs", "data/runs", partitions=4,
                               dask_address="tcp://127.0.0.1:8786")
    assert (build.name, build.flow_name, train.name, train.flow_name) == ("served-nightly", "build-pairs", "served-weekly",
                                                                          "train-pairs")
    assert build.entrypoint == "flows/build_pairs.py:build_pairs"
    assert [s.schedule.cron for s in build.schedules] == [BUILD_CRON]
    assert [s.schedule.cron for s in train.schedules] == [TRAIN_CRON]
    assert all(s.active and s.schedule.timezone == "UTC" for s in [*build.schedules, *train.schedules])
    params = build_pairs.validate_parameters(build.parameters)["params"]
    assert isinstance(params, BuildPairsParams)
    assert (params.partitions, params.resume, params.out) == (4, True,
                                                              "data/pairs/{manifest_sha}-{config_hash}-p{partitions}")
    assert train_pairs.validate_parameters(train.parameters)["params"].shards == "data/pairs"
    schema = build._parameter_openapi_schema.model_dump()
    assert schema["required"] == ["params"]
    props = schema["definitions"]["BuildPairsParams"]["properties"]
    assert props["partitions"]["minimum"] == 1 and "manifest_sha" in props["out"]["description"]
    with pytest.raises(ValidationError, match="partitions"):
        BuildPairsParams(samples="s", out="o", partitions=0)
    with pytest.raises(ValidationError, match="extra"):
        BuildPairsParams(samples="s", out="o", shard_size=3)
    assert deployments("s", "o", None) and len(deployments("s", "o", None)) == 1  # no runs root: no training


def test_prefect_yaml_deployments_load_and_validate():
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import load_flow_from_entrypoint

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (pull,) = spec["pull"]
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == "{{ prefect.variables.medpref_repo }}"
    names = set()
    for dep in spec["deployments"]:
        path, _, fn = dep["entrypoint"].partition(":")
        assert (REPO / path).is_file(), dep["entrypoint"]
        flow = load_flow_from_entrypoint(str(REPO / path) + ":" + fn)
        validated = flow.validate_parameters(dep["parameters"])  # the flow's own pydantic validation
        assert set(validated) == {"params"}
        for sched in dep.get("schedules", []):
            assert CronSchedule(cron=sched["cron"], timezone=sched["timezone"]).cron == sched["cron"]
        assert dep["work_pool"]["name"] == "medpref"
        names.add(f"{flow.name}/{dep['name']}")
        for key in ("samples", "config_path"):
            value = dep["parameters"]["params"].get(key)
            if value:
                assert (REPO / value).is_file(), (dep["name"], value)  # relative to the checkout
    assert names == {"build-pairs/nightly", "build-pairs/scale-out", "build-pairs/nightly-vllm", "train-pairs/weekly"}


def test_orchestration_doc_names_what_exists():
    doc = (REPO / "docs" / "ORCHESTRATION.md").read_text()
    for needle in ("prefect server start", "prefect worker start --pool medpref", "deploy --all",
                   "python -m flows.serve", "docker compose", "prefect-worker", "build-pairs/nightly",
                   "PREFECT_API_URL", "--partitions", "dask_address"):
        assert needle in doc, needle


def test_out_template_placeholders():
    from flows.build_pairs import format_out

    assert format_out("o/{manifest_sha}-{config_hash}/{date}", "ab" * 32, "c0ffee", "2026-11-02") == \
        "o/abababababab-c0ffee/2026-11-02"
    assert format_out("plain/folder", "x", "y", "z") == "plain/folder"
    assert format_out("o/{manifest_sha}-p{partitions}", "ab" * 32, "c", "d", partitions=4) == "o/abababababab-p4"
    with pytest.raises(ValueError, match=r"unknown placeholder .*\{partitions\}"):
        format_out("o/{sha}", "x", "y", "z")


def test_a_run_overrides_only_the_params_it_names():
    """``prefect deployment run --params '{"params": {...}}'`` replaces the deployment's whole ``params``
    (Prefect merges one top-level key at a time): the flow puts the deployment's other keys back."""
    from flows.build_pairs import BuildPairsParams, build_pairs, merge_deployment_params

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    scale_out = next(d for d in spec["deployments"] if d["name"] == "scale-out")["parameters"]
    run = build_pairs.validate_parameters({"params": {"samples": "data/samples.jsonl"}})["params"]
    merged = merge_deployment_params(run, scale_out)
    assert merged.samples == "data/samples.jsonl"
    assert (merged.partitions, merged.dask_workers, merged.config_path, merged.resume, merged.out) == (
        4, 2, "configs/default.yaml", True, "out/pairs/{manifest_sha}-{config_hash}-p{partitions}")
    # a key the run sets explicitly wins, even when it equals the model's default
    run = build_pairs.validate_parameters({"params": {"partitions": 1, "dask_workers": 0}})["params"]
    assert (merge_deployment_params(run, scale_out).partitions, merge_deployment_params(run, scale_out).dask_workers,
            merge_deployment_params(run, scale_out).samples) == (1, 0, "medpref_data/sample/samples.jsonl")
    # outside a deployment nothing is merged, and the two required keys are checked
    with pytest.raises(ValueError, match="samples, out required"):
        merge_deployment_params(BuildPairsParams(resume=True), None)


def test_training_picks_the_newest_finished_build(tmp_path):
    import os

    from flows.train_pairs import newest_finished_build

    for name, finished, mtime in (("old", True, 1_000), ("new", True, 2_000), ("running", False, 3_000)):
        (tmp_path / name).mkdir()
        if finished:
            (tmp_path / name / "manifest.json").write_text(json.dumps({"counts": {}}))
            os.utime(tmp_path / name / "manifest.json", (mtime, mtime))
    assert newest_finished_build(tmp_path) == tmp_path / "new"
    assert newest_finished_build(tmp_path / "old") == tmp_path / "old"
    with pytest.raises(FileNotFoundError, match="finished build"):
        newest_finished_build(tmp_path / "running")


def test_zombie_automation_installs_once_and_clear_crashes_old_running_runs(prefect_harness):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    from flows.zombies import AUTOMATION_NAME, clear, install

    install(120)
    install(90)  # a second install replaces the first
    with get_client(sync_client=True) as client:
        (auto,) = client.read_automations_by_name(AUTOMATION_NAME)
        assert auto.trigger.posture == "Proactive" and auto.trigger.within.total_seconds() == 90
        assert auto.trigger.after == {"prefect.flow-run.heartbeat"} and auto.actions[0].type == "change-flow-run-state"

        @flow(name="zombie-test")
        def stuck():
            pass

        run = client.create_flow_run(stuck)
        client.set_flow_run_state(run.id, Running(), force=True)
        assert not [line for line in clear(3600, dry_run=True) if str(run.id) in line]  # too recent
        assert [line for line in clear(0, dry_run=True) if str(run.id) in line]
        assert client.read_flow_run(run.id).state.type.value == "RUNNING"  # a dry run changes nothing
        assert [line for line in clear(0) if str(run.id) in line]
        assert client.read_flow_run(run.id).state.type.value == "CRASHED"
