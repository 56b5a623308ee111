"""The build as a Prefect 3 flow: the same stage functions as ``build-pairs run``, one task each.

Orchestration lives here only; nothing in ``pipeline/`` imports Prefect. Tasks do not cache (their
inputs hold a tokenizer and open writer), and only transient failures are retried: a sampler server
that dropped out, or a filesystem hiccup while writing. Retrying is safe because processing has no
side effects and the writer ignores a sample it has already buffered or committed.

    python -m flows.build_pairs SAMPLES.jsonl OUT_DIR [CONFIG.yaml]
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from pipeline.config import PipelineConfig, load_config
from pipeline.runner import (
    ManifestItem,
    RunContext,
    RunSummary,
    batched,
    finalize_run,
    prepare_run,
    process_items,
    read_manifest,
    write_results,
)
from pipeline.samplers import TransientSamplerError
from pipeline.writer import SampleResult


def _is_transient(exc: BaseException | None) -> bool:
    if isinstance(exc, TransientSamplerError):
        return True
    # Interrupted or busy I/O (e.g. a network filesystem); a full disk or a permission error is not transient.
    return isinstance(exc, (InterruptedError, BlockingIOError, TimeoutError, ConnectionError))


def retry_transient(task_, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the failure is transient."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as e:  # noqa: BLE001 - the state could not be read: the result is the error
        exc = e
    return _is_transient(exc if isinstance(exc, BaseException) else None)


@task(name="prepare", cache_policy=NO_CACHE)
def prepare_task(samples: str, out: str, config: PipelineConfig, resume: bool) -> RunContext:
    return prepare_run(samples, out, config, resume)


@task(name="read-manifest", cache_policy=NO_CACHE)
def read_task(samples: str) -> list[ManifestItem]:
    return list(read_manifest(samples))


@task(name="process", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=retry_transient)
def process_task(ctx: RunContext, items: list[ManifestItem]) -> list[SampleResult]:
    return process_items(ctx, items)


@task(name="write", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1, retry_condition_fn=retry_transient)
def write_task(ctx: RunContext, results: list[SampleResult]) -> None:
    write_results(ctx, results)


@task(name="finalize-manifest", cache_policy=NO_CACHE)
def finalize_task(ctx: RunContext) -> RunSummary:
    return finalize_run(ctx)


@flow(name="build-pairs", log_prints=True)
def build_pairs(samples: str, out: str, config_path: str | None = None, resume: bool = False) -> dict:
    """Build pair shards from ``samples`` into ``out``; returns the counts written to manifest.json."""
    config = load_config(config_path, {})
    ctx = prepare_task(samples, out, config, resume)
    if not ctx.writer.complete:
        items = read_task(samples)
        for batch in batched(items, config.sampler.batch_size):
            write_task(ctx, process_task(ctx, batch))
    summary = finalize_task(ctx)
    print(summary.format())
    return {"out_dir": str(summary.out_dir), "counts": summary.counts, "shards": summary.shards}


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) not in (2, 3):
        sys.exit("usage: python -m flows.build_pairs SAMPLES.jsonl OUT_DIR [CONFIG.yaml]")
    build_pairs(args[0], str(Path(args[1])), args[2] if len(args) == 3 else None)
