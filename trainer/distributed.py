"""Several processes (torchrun / accelerate launch, DDP semantics) on plain torch.distributed; FSDP's
sharding is in trainer/fsdp.py.

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


def init_world(device_type: str, group: bool = False) -> World:
    """The process group from the launcher's environment (RANK, WORLD_SIZE); one process otherwise.
    `group`: FSDP needs a process group even for one process (a single-member one is made)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if size <= 1:
        if group and not dist.is_initialized():
            dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1)
        return World()
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
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


def clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float, sharded: bool = False) -> float:
    """Scale the gradients so that their global L2 norm is at most `max_norm`; returns the norm before.

    Why not torch's `clip_grad_norm_`: its fp32 norm of per-tensor norms rounds differently on full
    tensors and on FSDP shards (2e-5 relative on the tiny models), so one process and FSDP would clip
    differently. Here the squares are summed in fp64, over this process's shards and then (`sharded`)
    over the processes:  norm = sqrt(sum_p sum_i g_p,i^2),  g <- g * min(1, max_norm / (norm + 1e-6)).
    """
    grads = [p.grad for p in params if p.grad is not None]
    local = [g.to_local() if hasattr(g, "to_local") else g for g in grads]
    total = torch.zeros((), dtype=torch.float64)
    for g in local:
        total += g.detach().double().pow(2).sum().cpu()
    if sharded and dist.is_initialized() and dist.get_world_size() > 1:
        total = total.to(local[0].device if local else "cpu")
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    norm = float(total.sqrt())
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for g in local:
            g.mul_(coef)
    return norm


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
