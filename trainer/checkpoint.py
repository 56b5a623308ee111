"""Checkpoints of train-pairs: RUN/checkpoints/step-NNNNNN/ with the model (`save_pretrained`) and
trainer_state.pt (optimiser, schedule, RNG, step), and the final model in RUN/final/.

Why one format for every launch: a checkpoint holds full tensors in a one-process run's layout (under FSDP
they are gathered from the shards first, trainer/fsdp.py), so it resumes on any number of processes, with
DDP, FSDP or none. Every process calls the save functions (FSDP's gathers are collective); only the main
process writes.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import torch

from trainer.distributed import World
from trainer.fsdp import full_model_state, full_optimizer_state, load_optimizer_state
from trainer.model import save_pretrained


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted((run_dir / "checkpoints").glob("step-*/trainer_state.pt"))
    return found[-1].parent if found else None


def save_model(policy, adapter, out_dir: Path, root=None, world: World = World()) -> None:
    """`save_pretrained` of the policy (LoRA: the adapter only); under FSDP from the gathered weights."""
    state = full_model_state(root) if root is not None else None
    if world.main:
        save_pretrained(policy, adapter, out_dir, state_dict=state)


def save_checkpoint(run_dir: Path, step: int, policy, adapter, optimizer, scheduler, keep: int,
                    extra: dict | None = None, root=None, world: World = World()) -> Path:
    """checkpoints/step-NNNNNN/: the model and trainer_state.pt; the state is written last, so a
    checkpoint without it is incomplete and never resumed from."""
    ckpt = run_dir / "checkpoints" / f"step-{step:06d}"
    save_model(policy, adapter, ckpt, root, world)
    optim_state = full_optimizer_state(root, optimizer) if root is not None else optimizer.state_dict()
    if not world.main:
        return ckpt
    state = {
        "step": step,
        "optimizer": optim_state,
        "scheduler": scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
        **(extra or {}),
    }
    torch.save(state, ckpt / "trainer_state.pt.tmp")
    (ckpt / "trainer_state.pt.tmp").rename(ckpt / "trainer_state.pt")
    old = sorted((run_dir / "checkpoints").glob("step-*"))[:-keep] if keep > 0 else []
    for path in old:
        shutil.rmtree(path)
    return ckpt


def load_checkpoint_weights(policy, adapter, ckpt: Path) -> None:
    """Put the weights saved in a checkpoint back into the policy (built from the original model, before
    any FSDP sharding)."""
    if hasattr(policy, "peft_config"):
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(policy, load_file(str(ckpt / "adapter_model.safetensors")))
        return
    saved = adapter.load_model(dtype=torch.float32, path=ckpt)
    policy.load_state_dict(saved.state_dict())


def load_trainer_state(ckpt: Path, optimizer, scheduler, root=None) -> dict:
    """Optimiser (sharded under FSDP), schedule and RNG from trainer_state.pt; returns the whole state."""
    state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
    if root is not None:
        load_optimizer_state(root, optimizer, state["optimizer"])
    else:
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    return state
