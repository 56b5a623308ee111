"""Policy, reference and the forward pass that scores response tokens.

Why here and not in the loop: how to get a frozen reference (a copy, or the same weights with LoRA adapters
switched off) and how to read response logits out of any HF vision-language model are details the recipe
in loop.py should not have to show.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import AutoModelForImageTextToText, AutoProcessor

from trainer.data import PairBatch


def load_policy(model_path: Path, dtype: torch.dtype, device: torch.device):
    """Any HF model that AutoModelForImageTextToText loads, and its processor."""
    model = AutoModelForImageTextToText.from_pretrained(str(model_path), dtype=dtype).to(device)
    processor = AutoProcessor.from_pretrained(str(model_path))
    tokenizer = getattr(processor, "tokenizer", processor)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    disable_dropout(model)
    return model, processor


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


def add_lora(model, r: int = 16, alpha: int = 32):
    """Wrap the policy in LoRA adapters (peft); the reference is then the same model, adapters off."""
    if not peft_available():
        raise ImportError("--lora needs the optional package peft: `pip install peft`")
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules="all-linear")
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


@functools.lru_cache(maxsize=16)
def _accepts_logits_to_keep(model_type: type) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model_type.forward).parameters
    except (TypeError, ValueError, AttributeError):
        return False


def response_logits(model, batch: PairBatch, rows: Tensor | None = None, image_inputs=None) -> Tensor:
    """Logits that predict each response token: [rows, R, V] (row order of `rows`, default all 2B rows).

    Only a window of columns that covers every row's response is projected onto the vocabulary
    (`logits_to_keep`), so a large vocabulary does not cost a [2B, L, V] tensor.
    """
    input_ids, attention_mask, label_pos = batch.input_ids, batch.attention_mask, batch.label_pos
    if rows is not None:
        input_ids, attention_mask, label_pos = input_ids[rows], attention_mask[rows], label_pos[rows]
    image_inputs = batch.image_inputs if image_inputs is None else image_inputs
    length = input_ids.shape[1]
    start = int(label_pos[:, 0].min()) - 1  # first column whose logits predict a response token
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False, **image_inputs}
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if _accepts_logits_to_keep(type(base)):
        kwargs["logits_to_keep"] = length - start
    else:
        start = 0
    logits = model(**kwargs).logits
    if logits.shape[1] == length:  # all columns came back (no window, or the model ignored it)
        start = 0
    index = (label_pos - 1 - start).unsqueeze(-1).expand(-1, -1, logits.shape[-1])
    return torch.gather(logits, 1, index)


def save_pretrained(model, processor, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


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
