"""FSDP (torch's FSDP2, `fully_shard`) for train-pairs: parameters, gradients and optimiser state sharded
over the processes, one FSDP unit per language-model decoder layer and one root unit for the rest.

Why this layout, and not FSDP over the whole model or the vision tower as its own unit:
- The trainer runs the model body and the output head separately (trainer/logps.py), several times per
  step. FSDP only all-gathers parameters around a unit's `forward`, so the body is called through a root
  wrapper (`ShardedBody`) whose forward is the body's; the root keeps its parameters (embeddings, vision
  tower, projector, final norm, head, tied or not) gathered from its first forward to the end of the
  backward (`reshard_after_forward=False`), so the chunked head and KL can use them between forwards.
- The vision tower lives in the root unit: a process whose micro-batch has no image does not run it, and a
  unit of its own would then skip an all-gather the other processes make (a deadlock). Parameters a process
  did not use get zero gradients in the reduce-scatter (`set_reduce_scatter_unused_params`).
- Every process must run the same sequence of unit forwards and backwards. Where the trainer's control flow
  depends on a process's own pairs (a cached reference, pairs with corrupted images), the processes agree
  first (`any_rank`) and a process with nothing to do runs a one-token forward whose loss weight is 0.

Checkpoints hold full (gathered) tensors in the format of a one-process run: the model through
`save_pretrained`, the optimiser state keyed by parameter index, so a checkpoint resumes on any number of
processes, with or without FSDP. FSDP2 runs on the CPU with gloo in this torch (tests/test_distributed.py).
"""

from __future__ import annotations

import os
import re
import warnings

import torch
import torch.distributed as dist
from torch import nn

from trainer.distributed import World

VISION = re.compile(r"(^|\.)(visual|vision_tower|vision_model|vision|multi_modal_projector|connector|"
                    r"mm_projector|merger)(\.|$)")


def fsdp_requested(flag: bool) -> bool:
    """--fsdp, or an `accelerate launch` with `distributed_type: FSDP` (it sets ACCELERATE_USE_FSDP)."""
    return flag or os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true")


class ShardedBody(nn.Module):
    """The FSDP root: owns the whole (PEFT-wrapped) model; its forward is the transformers body's, so every
    body call all-gathers the root's parameters first."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, **inputs):
        from trainer.logps import unwrap

        return unwrap(self.model).model(**inputs)

    def get_image_features(self, **inputs):
        """The body's image encoder (trainer/features.py), with the root's parameters gathered first."""
        from trainer.logps import unwrap

        return unwrap(self.model).model.get_image_features(**inputs)


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The language model's decoder layers (transformers' `_no_split_modules` classes outside the vision
    parts): one FSDP unit each."""
    from trainer.logps import unwrap

    base = unwrap(model)
    names = set(getattr(base, "_no_split_modules", None) or [])
    layers = [m for name, m in base.named_modules() if type(m).__name__ in names and not VISION.search(name)]
    if not layers:
        raise ValueError(f"FSDP: no decoder layers found in {type(base).__name__} (_no_split_modules {names})")
    return layers


def shard(model: nn.Module, mixed_bf16: bool = False) -> ShardedBody:
    """Apply FSDP2 in place: each decoder layer, then the root. `model` keeps working as before (PEFT's
    `disable_adapter`, `save_pretrained` with a gathered state dict); the body is reached through the
    returned root, which `trainer.logps.body_of` finds on the base model."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    from trainer.logps import unwrap

    kwargs = {}
    if mixed_bf16:  # weights stay fp32 in the shards, computed in bf16, gradients reduced in fp32
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for layer in decoder_layers(model):
        fully_shard(layer, **kwargs)
    root = ShardedBody(model)
    fully_shard(root, reshard_after_forward=False, **kwargs)
    register_fsdp_forward_method(root, "get_image_features")
    # the body's output holds views; nothing here changes them in place (the trainer only gathers from them)
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    root.set_reduce_scatter_unused_params(True)
    object.__setattr__(unwrap(model), "_fsdp_root", root)  # not a submodule: no cycle in the module tree
    return root


def any_rank(flag: bool, world: World) -> bool:
    """True on every process when `flag` is true on at least one (so all run the same forwards)."""
    if world.size == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _strip(key: str) -> str:
    return key[len("model."):] if key.startswith("model.") else key


def full_model_state(root: ShardedBody) -> dict[str, torch.Tensor]:
    """The full state dict of the wrapped model (keys as `model.state_dict()`), on rank 0 only (CPU);
    every process must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sd = get_model_state_dict(root, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {_strip(k): v for k, v in sd.items()}


def _param_names(root: ShardedBody, optimizer: torch.optim.Optimizer) -> list[str]:
    names = {id(p): _strip(n) for n, p in root.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def full_optimizer_state(root: ShardedBody, optimizer: torch.optim.Optimizer) -> dict:
    """The optimiser state in `optimizer.state_dict()`'s one-process format (parameter indices), gathered
    from the shards; complete on rank 0. Every process must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    osd = get_optimizer_state_dict(root, optimizer,
                                   options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    names = _param_names(root, optimizer)
    index = {name: i for i, name in enumerate(names)}
    state = {index[_strip(k)]: v for k, v in osd.get("state", {}).items()}
    groups, start = [], 0
    for group, saved in zip(optimizer.param_groups, osd.get("param_groups", optimizer.param_groups), strict=True):
        groups.append({**{k: v for k, v in saved.items() if k != "params"},
                       "params": list(range(start, start + len(group["params"])))})
        start += len(group["params"])
    return {"state": state, "param_groups": groups}


def load_optimizer_state(root: ShardedBody, optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Load a one-process-format optimiser state (every process holds it whole) into the sharded optimiser."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    names = ["model." + n for n in _param_names(root, optimizer)]
    state = {names[i]: v for i, v in saved["state"].items()}
    groups, start = [], 0
    for group in saved["param_groups"]:
        groups.append({**{k: v for k, v in group.items() if k != "params"},
                       "params": names[start : start + len(group["params"])]})
        start += len(group["params"])
    set_optimizer_state_dict(root, optimizer, {"state": state, "param_groups": groups},
                             options=StateDictOptions(full_state_dict=True))
