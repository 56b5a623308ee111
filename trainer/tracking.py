"""Experiment tracking beside metrics.jsonl: TensorBoard and Weights & Biases (offline), chosen like TRL's
`report_to`. Why lazy: both are optional packages; asking for one that is not installed is a one-line
error naming the package, before any model loads."""

from __future__ import annotations

import os
from pathlib import Path

REPORTERS = ("none", "tensorboard", "wandb")


def check_report_to(names: list[str]) -> list[str]:
    names = [n for n in names if n != "none"]
    for name in names:
        if name not in REPORTERS:
            raise ValueError(f"unknown --report-to {name!r}; valid: {', '.join(REPORTERS)}")
        module = {"tensorboard": "tensorboard", "wandb": "wandb"}[name]
        try:
            __import__(module)
        except ImportError as e:
            raise ImportError(f"--report-to {name} needs the package {module}: `pip install {module}`") from e
    return names


class Trackers:
    """Writes each step's metrics to every chosen tracker (main process only)."""

    def __init__(self, names: list[str], run_dir: Path, config: dict):
        self.tb = self.wandb_run = None
        if "tensorboard" in names:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        if "wandb" in names:
            import wandb

            os.environ.setdefault("WANDB_MODE", "offline")  # nothing leaves the machine unless asked
            self.wandb_run = wandb.init(dir=str(run_dir), project=os.environ.get("WANDB_PROJECT", "medpref"),
                                        config=config, mode=os.environ["WANDB_MODE"])

    def log(self, record: dict) -> None:
        step = record["step"]
        scalars = {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
        if self.tb is not None:
            for key, value in scalars.items():
                self.tb.add_scalar(f"train/{key}", value, step)
        if self.wandb_run is not None:
            self.wandb_run.log({f"train/{k}": v for k, v in scalars.items()}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
