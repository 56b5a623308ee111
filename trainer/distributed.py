"""Several processes (torchrun / accelerate launch, DDP semantics) on plain torch.distributed.

Why manual gradient averaging instead of wrapping the model in DistributedDataParallel: the trainer runs
the model body and the head separately (trainer/logps.py), several times per step (clean, corrupted,
reference), which DDP's forward hooks do not follow. Averaging the gradients of the trainable parameters
once per optimisation step, after gradient accumulation, is what DDP computes; every process then takes
the same clipped optimiser step, so the weights stay identical without broadcasting them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Only this process writes metrics, checkpoints and the final model."""
        return self.rank == 0


def init_world(device_type: str) -> World:
    """The process group from the launcher's environment (RANK, WORLD_SIZE); one process otherwise."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        raise ValueError("FSDP is not supported by train-pairs yet (parameters are not sharded); use a DDP "
                         "launch (torchrun, configs/accelerate/ddp_gpu.yaml), with --lora for large models")
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def average_gradients(params: list[torch.nn.Parameter], world: World) -> None:
    if world.size == 1:
        return
    for p in params:  # a process whose batch had no image leaves the vision tower without gradients
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def average_metrics(metrics: dict[str, float], world: World) -> dict[str, float]:
    """Mean over processes (each holds the same number of pairs, so this is the global batch mean)."""
    if world.size == 1:
        return metrics
    keys = list(metrics)
    values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return {k: float(v) / world.size for k, v in zip(keys, values.tolist(), strict=True)}


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
