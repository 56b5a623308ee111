"""The build as a Prefect 3 flow: plan, one task per partition (locally or on a Dask cluster), merge.

The tasks call the same stage functions as ``build-pairs run`` (``pipeline.runner``), so the flow and
the command line write identical tables for the same partition count. Orchestration lives here only;
nothing in ``pipeline/`` imports Prefect.

- Scale-out: the manifest is split by line index into ``partitions``; each partition is one task that
  writes its own rank-prefixed shards, and the merge renames them into ``shard-NNNNN.parquet`` with one
  ``manifest.json``. With ``dask_address`` (an existing cluster) or ``dask_workers`` (a temporary local
  one) the partitions run as Dask tasks through ``prefect_dask.DaskTaskRunner``.
- Retries: only transient failures (a sampler server that dropped out, interrupted I/O) are retried,
  and a retried partition resumes after its last committed chunk. A full disk or a bug fails at once.
- Caching: a partition's result is cached on its inputs (``INPUTS``) plus a key made of the manifest's
  sha256, the config hash, the run key and the run id, so a re-run of the same run (``resume``)
  skips finished partitions, while a new output folder never reuses an old result.
- Each run attaches a markdown artifact summarising counts, stage timings and rejects.

    python -m flows.build_pairs SAMPLES.jsonl OUT_DIR [--config CONFIG.yaml] [--partitions N]
                                [--dask-address tcp://host:8786 | --dask-workers N] [--resume]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import INPUTS, NO_CACHE, CacheKeyFnPolicy
from pydantic import BaseModel, ConfigDict, Field

from flows.orphans import die_with_parent, in_dask_worker, started_by_prefect_runner
from flows.schedule import scheduled_date
from pipeline.cli import filter_third_party_warnings
from pipeline.config import ConfigError, load_config
from pipeline.manifest_reader import ManifestError, scan_manifest
from pipeline.merge import run_markdown
from pipeline.plan import MAX_PARTITIONS
from pipeline.runner import (
    PartitionResult,
    RunError,
    RunPlan,
    build_partition,
    is_transient,
    merge_run,
    plan_run,
    release_run,
)

ARTIFACT_KEY = "build-pairs-run"


class BuildPairsParams(BaseModel):
    """The flow's parameters (a deployment's parameter schema is built from this model)."""

    model_config = ConfigDict(extra="forbid")

    # samples and out are required, but checked after a deployment run's params are merged over the
    # deployment's own (``merge_deployment_params``), so a run may override only the keys it names.
    samples: str | None = Field(None, description="The sample manifest (JSON Lines). Required.")
    out: str | None = Field(None, description="The output folder (required). May contain {manifest_sha} (first "
                                              "12 hex digits of the manifest's sha256), {config_hash}, "
                                              "{partitions} and {date} (the run's scheduled UTC date), so a "
                                              "scheduled deployment writes one folder per input, configuration "
                                              "and partition count.")
    config_path: str | None = Field(None, description="A YAML config file (configs/default.yaml lists the keys).")
    overrides: dict[str, Any] = Field(default_factory=dict,
                                      description="Dotted config overrides, e.g. {\"sampler.name\": \"vllm-server\"}.")
    resume: bool = Field(False, description="Finish an interrupted run in `out` (a finished one is a no-op).")
    partitions: int = Field(1, ge=1, le=MAX_PARTITIONS, description="Split the manifest into N partitions by "
                                                                      "line index, one task each.")
    dask_address: str | None = Field(None, description="Scheduler of an existing Dask cluster, e.g. "
                                                       "tcp://dask-scheduler:8786.")
    dask_workers: int = Field(0, ge=0, le=256, description="No address: start a temporary local Dask cluster "
                                                           "with this many worker processes (0: no Dask).")
    report: bool = Field(True, description="Write OUT/report.html and attach it to the flow run as an artifact.")
    wait_for_lock: bool = Field(False, description="Another process is writing `out` (another run, or an "
                                                   "orphan of a dead one): wait for it instead of failing at once.")

    def checked(self) -> BuildPairsParams:
        missing = [k for k in ("samples", "out") if not getattr(self, k)]
        if missing:
            raise ValueError(f"params: {', '.join(missing)} required (neither the run nor its deployment sets it)")
        return self

    @property
    def on_dask(self) -> bool:
        return bool(self.dask_address) or self.dask_workers > 0


def _is_transient(exc: BaseException | None) -> bool:
    return is_transient(exc)


def retry_transient(task_, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the failure is transient."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as e:  # noqa: BLE001 - the state could not be read: the result is the error
        exc = e
    return _is_transient(exc if isinstance(exc, BaseException) else None)




def format_out(template: str, manifest_sha: str, config_hash: str, date: str, partitions: int = 1) -> str:
    """Fill the ``out`` placeholders; a template naming an unknown placeholder is an error."""
    try:
        return template.format(manifest_sha=manifest_sha[:12], config_hash=config_hash, date=date,
                               partitions=partitions)
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"out {template!r}: unknown placeholder {e}; valid: {{manifest_sha}}, {{config_hash}}, "
                         "{partitions}, {date}") from None


def merge_deployment_params(params: BuildPairsParams, deployment_params: dict | None) -> BuildPairsParams:
    """The keys this run's ``params`` names, over its deployment's ``params``.

    Prefect merges a run's parameters over the deployment's one top-level key at a time, and all of
    ours live under ``params``: without this, ``--params '{"params": {"samples": ...}}'`` would drop
    the deployment's ``partitions``, ``config_path``, ``dask_workers``... silently."""
    base = dict((deployment_params or {}).get("params") or {})
    given = params.model_dump(mode="json", include=params.model_fields_set)
    return BuildPairsParams.model_validate({**base, **given}).checked()


def deployment_params() -> dict | None:
    """This flow run's deployment's default parameters (None outside a deployment run)."""
    from prefect.runtime import deployment

    if not deployment.id:
        return None
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment(UUID(deployment.id)).parameters


@task(name="plan-run", cache_policy=NO_CACHE)
def plan_task(params: BuildPairsParams) -> RunPlan:
    """Scan the manifest, check the set-up, open (or resume) the output folder."""
    from prefect.runtime import flow_run

    config = load_config(params.config_path, params.overrides)
    try:
        scan = scan_manifest(params.samples)
    except ManifestError as e:
        raise RunError(str(e)) from e
    out = format_out(params.out, scan.sha256, config.content_hash(), scheduled_date(), params.partitions)
    # On Dask the sampler is built by the workers; building it here too could load a model twice. The
    # output folder's lock is held by this (the flow run's) process until the flow ends.
    return plan_run(params.samples, out, config, params.resume, params.partitions, check_setup=not params.on_dask,
                    scan=scan, wait_for_lock=params.wait_for_lock, flow_run_id=flow_run.id)


def partition_cache_key(context, inputs: dict[str, Any]) -> str:
    """The partition's identity beyond its rank (INPUTS covers the rank): manifest sha256, config hash,
    the run key (adds the shard layout and partition count) and the run id (a new folder, a new id)."""
    plan: RunPlan = inputs["plan"]
    return f"{plan.source_sha256}:{plan.config_hash}:{plan.run_key}:{plan.run_id}"


@task(name="build-partition", task_run_name="build-partition-{rank}",
      cache_policy=(INPUTS - "plan") + CacheKeyFnPolicy(cache_key_fn=partition_cache_key), persist_result=True,
      retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def partition_task(plan: RunPlan, rank: int) -> PartitionResult:
    filter_third_party_warnings()
    if in_dask_worker():
        die_with_parent()  # an orphaned Dask worker must not keep writing after its flow run is gone
    return build_partition(plan, rank)


@task(name="merge-partitions", cache_policy=NO_CACHE)
def merge_task(plan: RunPlan) -> dict:
    """Rename the partitions' shards, write rejects.parquet and then manifest.json; returns the manifest."""
    merge_run(plan)
    return json.loads((Path(plan.out_dir) / "manifest.json").read_text(encoding="utf-8"))


@flow(name="build-pairs-partitions")
def partitions_flow(plan: RunPlan) -> list[PartitionResult]:
    """All partitions at once on the flow's task runner (Dask, when called through ``dask_runner``)."""
    futures = [partition_task.submit(plan, rank) for rank in range(plan.world_size)]
    return [f.result() for f in futures]


def dask_runner(address: str | None = None, workers: int = 0):
    """A Dask task runner: an existing cluster (``address``) or a temporary local one of ``workers``
    single-threaded processes (the pair builder is CPU-bound Python: threads would share one core)."""
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": max(1, workers), "threads_per_worker": 1, "processes": True,
                                          "host": "127.0.0.1", "dashboard_address": ":0"})


@task(name="pair-report", cache_policy=NO_CACHE)
def report_task(out_dir: str) -> dict:
    """The HTML pair report of the finished folder, linked from the flow run (issue: see the data)."""
    from flows.report_artifact import publish_report_artifact

    return publish_report_artifact(out_dir, Path(out_dir) / "report.html")


@flow(name="build-pairs", log_prints=True)
def build_pairs(params: BuildPairsParams) -> dict:
    """Build pair shards from ``params.samples`` into ``params.out``; returns the manifest's counts."""
    filter_third_party_warnings()
    if started_by_prefect_runner():
        die_with_parent()  # a SIGKILLed worker takes this run with it; the zombie automation marks it Crashed
    params = merge_deployment_params(params, deployment_params())
    plan = plan_task(params)
    try:
        return _build(params, plan)
    finally:
        release_run(plan)


def _build(params: BuildPairsParams, plan: RunPlan) -> dict:
    if not plan.complete:
        if params.on_dask:
            from prefect.settings import PREFECT_API_URL

            if not PREFECT_API_URL.value():
                get_run_logger().warning("no PREFECT_API_URL: each Dask worker starts its own temporary Prefect "
                                         "server; run `prefect server start` and set PREFECT_API_URL")
            partitions_flow.with_options(task_runner=dask_runner(params.dask_address, params.dask_workers))(plan)
        else:
            for rank in range(plan.world_size):  # one after another: the builder is not thread-safe
                partition_task(plan, rank)
    manifest = merge_task(plan)
    create_markdown_artifact(markdown=run_markdown(manifest), key=ARTIFACT_KEY,
                             description=f"build-pairs run in {plan.out_dir}")
    if params.report:
        try:
            report_task(plan.out_dir)
        except Exception as e:  # the pairs are written; a report failure must not fail the run
            get_run_logger().warning(f"pair report not written: {type(e).__name__}: {e}")
    c = manifest["counts"]
    print(f"wrote {c['pairs']} pairs in {len(manifest['shards'])} shard(s) to {plan.out_dir} "
          f"({c['samples']} samples, {c['rejects']} rejects)")
    return {"out_dir": plan.out_dir, "counts": c, "shards": manifest["shards"]}


def main(argv: list[str] | None = None) -> int:
    """One run from the shell. A run that cannot run (bad config, manifest, folder held by another
    writer) prints one line and exits 2, as ``build-pairs run`` does; its details stay in the run's logs."""
    ap = argparse.ArgumentParser(prog="python -m flows.build_pairs", description="Run the build-pairs flow once.")
    ap.add_argument("samples")
    ap.add_argument("out")
    ap.add_argument("--config", dest="config_path")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--dask-address")
    ap.add_argument("--dask-workers", type=int, default=0)
    ap.add_argument("--wait-for-lock", action="store_true")
    args = ap.parse_args(argv)
    try:
        params = BuildPairsParams(**vars(args)).checked()
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        return fail(e)
    with expected_failures_in_one_line():
        state = build_pairs(params, return_state=True)
    if not state.is_completed():
        return fail(state.result(raise_on_failure=False))
    print(json.dumps(state.result()["counts"]))
    return 0


EXPECTED = (RunError, ConfigError, ValueError, OSError)  # bad input or set-up, not a bug: no traceback


def fail(error: object) -> int:
    text = f"{type(error).__name__}: {error}" if not isinstance(error, EXPECTED) else str(error)
    print(f"python -m flows.build_pairs: error: {' '.join(text.split())}", file=sys.stderr)
    return 2


class _DropExpected(logging.Filter):
    """Prefect logs a failed task and flow with a traceback, then their final states; for an expected
    failure the shell gets only ``fail``'s one line (the run's logs on the server keep everything)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, EXPECTED):
            return False
        return "Finished in state Failed" not in record.getMessage()  # fail() says it instead


@contextmanager
def expected_failures_in_one_line():
    handlers = [h for name in ("prefect", "") for h in logging.getLogger(name or None).handlers]
    quiet = _DropExpected()
    for h in handlers:
        h.addFilter(quiet)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(quiet)


if __name__ == "__main__":
    sys.exit(main())
