"""Policy and reference: loading through the model's adapter, LoRA on the language model, the frozen
reference, and the cache of reference log-probs.

Why here and not in the loop: how to get a frozen reference (a copy, or the same weights with LoRA adapters
switched off) is a detail the recipe in loop.py should not have to show. Scoring lives in trainer/logps.py.
"""

from __future__ import annotations

import contextlib
import copy
import re
from pathlib import Path

import torch
from torch import Tensor, nn

from models import get_adapter


def load_policy(model_path: Path, dtype: torch.dtype, device: torch.device):
    """The model of `model_path` loaded by its family's adapter (models/), and the adapter itself."""
    adapter = get_adapter(model_path)
    model = adapter.load_model(dtype=dtype, device=device)
    disable_dropout(model)
    return model, adapter


def disable_dropout(model: nn.Module) -> None:
    """DPO-style objectives compare two forwards of the same text; dropout would make them disagree."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def peft_available() -> bool:
    try:
        import peft  # noqa: F401
    except ImportError:
        return False
    return True


VISION_PARTS = re.compile(r"(^|\.)(visual|vision_tower|vision_model|vision|multi_modal_projector|connector|"
                          r"mm_projector|merger)(\.|$)")


def language_linear_names(model) -> list[str]:
    """Names of the language model's linear layers: LoRA goes there only (the vision tower and projector
    stay frozen, the FiRe-MPO setup), never on the output head."""
    head = model.get_output_embeddings()
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and module is not head and not VISION_PARTS.search(name)]


def add_lora(model, r: int = 16, alpha: int | None = None, dropout: float = 0.0, rslora: bool = False):
    """Wrap the policy in LoRA adapters on its language model (peft); the reference is then the same
    model with the adapters disabled, so no second copy of the weights exists."""
    if not peft_available():
        raise ImportError("--lora needs the optional package peft: `pip install peft`")
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha if alpha is not None else 2 * r, lora_dropout=dropout,
                        use_rslora=rslora, target_modules=language_linear_names(model))
    return get_peft_model(model, config)


class Reference:
    """The frozen reference policy pi_ref: a frozen copy, or (LoRA) the policy with its adapters disabled."""

    def __init__(self, policy, dtype: torch.dtype | None = None):
        self.uses_adapters = hasattr(policy, "disable_adapter") and hasattr(policy, "peft_config")
        self.policy = policy
        if self.uses_adapters:
            self.model = None
        else:
            self.model = copy.deepcopy(policy).eval()
            self.model.requires_grad_(False)
            if dtype is not None:
                self.model.to(dtype)

    @contextlib.contextmanager
    def active(self):
        """Yields the module that computes reference log-probs, under no_grad."""
        with torch.no_grad():
            if self.uses_adapters:
                with self.policy.disable_adapter():
                    yield self.policy
            else:
                yield self.model


def save_pretrained(model, adapter, out_dir: Path, state_dict: dict | None = None) -> None:
    """The model (LoRA: its adapter) and the processor; `state_dict`: gathered weights (FSDP)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, **({"state_dict": state_dict} if state_dict is not None else {}))
    adapter.save_processor(out_dir)


class RefLogpsCache:
    """Reference per-token log-probs kept per pair (CPU), so the frozen reference runs once per pair.

    Only valid when nothing else needs the reference's full distribution (the token-wise KL does), and
    keyed by the image variant ("clean", "corrupt"). Rows are stored trimmed to each response's length.
    """

    def __init__(self):
        self.store_: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}

    def lookup(self, pair_ids: list[str], key: str, length: int, device) -> Tensor | None:
        got = [self.store_.get((pid, key)) for pid in pair_ids]
        if any(g is None for g in got):
            return None
        out = torch.zeros(2 * len(pair_ids), length)
        for i, (chosen, rejected) in enumerate(got):
            out[i, : len(chosen)] = chosen
            out[len(pair_ids) + i, : len(rejected)] = rejected
        return out.to(device)

    def store(self, pair_ids: list[str], key: str, logps: Tensor, mask: Tensor) -> None:
        n = len(pair_ids)
        lengths = mask.sum(dim=1).long().tolist()
        logps = logps.detach().float().cpu()
        for i, pid in enumerate(pair_ids):
            self.store_[(pid, key)] = (logps[i, : lengths[i]].clone(), logps[n + i, : lengths[n + i]].clone())
