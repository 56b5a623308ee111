"""Training as a Prefect 3 flow: pick a finished build, run ``trainer.loop.train``, summarise.

``shards`` may name one build's output folder, or a folder of builds (what the scheduled
``build-pairs`` deployment writes: one sub-folder per manifest and configuration); then the newest
*finished* build (one with ``manifest.json``) is used, so a scheduled training never reads a build that
is still being written. torch and transformers are imported inside the task, so importing this module
(to serve it) stays light.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from flows.schedule import scheduled_date

ARTIFACT_KEY = "train-pairs-run"


class TrainParams(BaseModel):
    """The flow's parameters: the ``train-pairs`` options a schedule needs."""

    model_config = ConfigDict(extra="forbid")

    shards: str = Field(description="A build's output folder, or a folder of builds (the newest finished is used).")
    out: str = Field(description="RUN_DIR; may contain {date} (the run's scheduled UTC date) and {build} (the "
                                 "chosen build folder's name).")
    model: str | None = Field(None, description="A vision-language model folder (default: the tiny random model).")
    steps: int = Field(100, ge=1)
    preset: str = Field("fire-mpo", description="fire-mpo, dpo, mask-dpo, rrpo, ...")
    lr: float | None = Field(None, gt=0)
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    seed: int = 0
    resume: bool = Field(False, description="Continue from RUN_DIR's latest checkpoint.")
    lora: bool = False
    precision: Literal["auto", "fp32", "bf16-mixed"] = "auto"
    device: str | None = None


def newest_finished_build(path: str | Path) -> Path:
    """``path`` itself when it is a finished build, else its newest sub-folder holding ``manifest.json``."""
    path = Path(path)
    if (path / "manifest.json").is_file():
        return path
    builds = [p for p in path.iterdir() if (p / "manifest.json").is_file()] if path.is_dir() else []
    if not builds:
        raise FileNotFoundError(f"{str(path)!r} is neither a finished build (manifest.json) nor a folder of them")
    return max(builds, key=lambda p: ((p / "manifest.json").stat().st_mtime, p.name))


@task(name="find-build", cache_policy=NO_CACHE)
def find_build_task(shards: str) -> str:
    return str(newest_finished_build(shards))


@task(name="train", cache_policy=NO_CACHE)
def train_task(params: TrainParams, shards: str, out: str) -> str:
    from trainer.loop import TrainConfig, train
    from trainer.presets import get_preset

    get_preset(params.preset)  # an unknown preset fails before any model loads
    cfg = TrainConfig(shards=Path(shards), out=Path(out), model=Path(params.model) if params.model else None,
                      steps=params.steps, preset=params.preset, lr=params.lr, batch_size=params.batch_size,
                      grad_accum=params.grad_accum, seed=params.seed, resume=params.resume, lora=params.lora,
                      precision=params.precision, device=params.device, progress=False)
    return str(train(cfg))




def metrics_markdown(run_dir: Path, build: str) -> str:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    lines = ["## train-pairs run", "", f"Shards: `{build}`, run folder: `{run_dir}`, {len(rows)} step(s).", ""]
    if rows:
        first, last = rows[0], rows[-1]
        lines += ["| metric | first step | last step |", "|---|---:|---:|"]
        lines += [f"| {k} | {first.get(k, float('nan')):.4f} | {last.get(k, float('nan')):.4f} |"
                  for k in ("loss", "reward_accuracy", "margin") if k in last]
    return "\n".join(lines) + "\n"


@flow(name="train-pairs", log_prints=True)
def train_pairs(params: TrainParams) -> dict:
    """Train on the newest finished build under ``params.shards``; returns the run folder."""
    build = find_build_task(params.shards)
    out = params.out.format(date=scheduled_date(), build=Path(build).name)
    run_dir = Path(train_task(params, build, out))
    create_markdown_artifact(markdown=metrics_markdown(run_dir, build), key=ARTIFACT_KEY,
                             description=f"train-pairs run in {run_dir}")
    return {"run_dir": str(run_dir), "shards": build}
