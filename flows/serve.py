"""Serve the scheduled deployments ``build-pairs/served-nightly`` and ``train-pairs/served-weekly``.

``flow.serve`` style: this process polls the Prefect server for scheduled runs and executes them as
subprocesses; no work pool or worker is needed (``prefect.yaml`` describes the same deployments for a
work pool and ``prefect worker start``; see docs/ORCHESTRATION.md).

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.serve \\
        --samples data/samples.jsonl --out-root data/pairs --runs-root data/runs [--partitions 2]

The build writes ``OUT_ROOT/{manifest_sha}-{config_hash}-p{partitions}`` and resumes, so a night whose manifest and
configuration did not change is a no-op, and a night that was killed is finished the next night.
The training picks the newest finished build under ``OUT_ROOT``.
"""

from __future__ import annotations

import argparse
import sys

from flows.build_pairs import BuildPairsParams, build_pairs
from flows.train_pairs import TrainParams, train_pairs

BUILD_CRON = "0 2 * * *"  # every night at 02:00
TRAIN_CRON = "0 4 * * 0"  # Sundays at 04:00, after that night's build
TIMEZONE = "UTC"
BUILD_OUT = "{out_root}/{{manifest_sha}}-{{config_hash}}-p{{partitions}}"  # a new --partitions: a new folder


def build_params(samples: str, out_root: str, config_path: str | None = None, partitions: int = 1,
                 dask_address: str | None = None, dask_workers: int = 0) -> BuildPairsParams:
    return BuildPairsParams(samples=samples, out=BUILD_OUT.format(out_root=out_root.rstrip("/")),
                            config_path=config_path, resume=True, partitions=partitions,
                            dask_address=dask_address, dask_workers=dask_workers)


def deployments(samples: str, out_root: str, runs_root: str | None = None, *, config_path: str | None = None,
                partitions: int = 1, dask_address: str | None = None, dask_workers: int = 0,
                build_cron: str = BUILD_CRON, train_cron: str | None = TRAIN_CRON, train_steps: int = 100,
                model: str | None = None) -> list:
    """The deployment objects (``RunnerDeployment``), built but not registered or served."""
    from prefect.schedules import Cron

    build = build_pairs.to_deployment(
        name="served-nightly",
        schedules=[Cron(build_cron, timezone=TIMEZONE)],
        parameters={"params": build_params(samples, out_root, config_path, partitions, dask_address,
                                           dask_workers).model_dump(mode="json")},
        description="Build preference pairs from the sample manifest (resumes; a no-op when nothing changed).",
        tags=["medpref", "build"],
    )
    if runs_root is None or train_cron is None:
        return [build]
    train = train_pairs.to_deployment(
        name="served-weekly",
        schedules=[Cron(train_cron, timezone=TIMEZONE)],
        parameters={"params": TrainParams(shards=out_root, out=f"{runs_root.rstrip('/')}/{{date}}-{{build}}",
                                          steps=train_steps, model=model).model_dump(mode="json")},
        description="Train on the newest finished build.",
        tags=["medpref", "train"],
    )
    return [build, train]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", required=True, help="the sample manifest the nightly build reads")
    ap.add_argument("--out-root", required=True, help="builds go to OUT_ROOT/{manifest_sha}-{config_hash}-p{partitions}")
    ap.add_argument("--runs-root", help="training runs go to RUNS_ROOT/{date}-{build} (omit: no training)")
    ap.add_argument("--config", dest="config_path")
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--dask-address")
    ap.add_argument("--dask-workers", type=int, default=0)
    ap.add_argument("--build-cron", default=BUILD_CRON)
    ap.add_argument("--train-cron", default=TRAIN_CRON)
    ap.add_argument("--train-steps", type=int, default=100)
    ap.add_argument("--model", help="policy model folder for training (default: the tiny random model)")
    args = ap.parse_args(argv)
    from prefect import serve

    serve(*deployments(args.samples, args.out_root, args.runs_root, config_path=args.config_path,
                       partitions=args.partitions, dask_address=args.dask_address, dask_workers=args.dask_workers,
                       build_cron=args.build_cron, train_cron=args.train_cron, train_steps=args.train_steps,
                       model=args.model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
