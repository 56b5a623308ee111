"""Per-token log-probs and the token-wise KL from hidden states, in chunks over response tokens only.

Why not `model(...).logits`: for a 150k-token vocabulary a [2B, T, V] fp32 logits tensor (and its
log-softmax and gradient) dominates memory. Here the model body runs once, the hidden states of the
response positions are gathered ([N, H], N real response tokens), and the output head is applied to
`chunk` of them at a time under activation checkpointing, so at most one [chunk, V] block is alive in the
forward and in the backward. The full-vocabulary KL is computed only at the positions its sum keeps
(the masked chosen tokens), the same way.

    logp_t = log softmax(W h_t)[y_t]                                        (per response token)
    KL(ref || pol)_t = sum_v p_ref(v) (log p_ref(v) - log p_pol(v))         (forward)
    KL(pol || ref)_t = sum_v p_pol(v) (log p_pol(v) - log p_ref(v))         (reverse)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from trainer.data import PairBatch

DEFAULT_CHUNK = 1024


@dataclass
class Head:
    """The output projection of a model, with Gemma-style final logit soft-capping when configured."""

    module: torch.nn.Module
    softcap: float | None = None

    def __call__(self, hidden: Tensor) -> Tensor:
        logits = self.module(hidden).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


def unwrap(model):
    """The transformers model under PEFT (`get_base_model`) and DDP (`module`) wrappers."""
    while hasattr(model, "module") and isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def body_of(model):
    """The callable that runs the model body: the FSDP root when the model is sharded (trainer/fsdp.py), so
    its parameters are gathered first; `model.model` otherwise."""
    base = unwrap(model)
    return base.__dict__.get("_fsdp_root") or base.model


def head_of(model) -> Head:
    base = unwrap(model)
    text = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    return Head(base.get_output_embeddings(), getattr(text, "final_logit_softcapping", None))


def response_hidden(model, batch: PairBatch, rows: Tensor | None = None, image_inputs=None) -> Tensor:
    """Last hidden states that predict each response token: [rows, R, H] (row order of `rows`).

    Runs the model body (`model.model` of every transformers causal / image-text-to-text class), not the
    head; the hidden state at column `label_pos - 1` predicts the response token at `label_pos`.
    """
    input_ids, attention_mask, label_pos = batch.input_ids, batch.attention_mask, batch.label_pos
    if rows is not None:
        input_ids, attention_mask, label_pos = input_ids[rows], attention_mask[rows], label_pos[rows]
    image_inputs = batch.image_inputs if image_inputs is None else image_inputs
    body = body_of(model)
    out = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **image_inputs)
    hidden = out.last_hidden_state
    index = (label_pos - 1).unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
    return torch.gather(hidden, 1, index)


def _chunk_logps(head: Head, hidden: Tensor, labels: Tensor) -> Tensor:
    # log p(y) = z_y - logsumexp(z): no second [chunk, V] tensor for the log-softmax
    logits = head(hidden)
    return logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def chunked_logps(head: Head, hidden: Tensor, labels: Tensor, mask: Tensor, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """Per-token log-probs [rows, R] (0 where `mask` is 0) from gathered hidden states [rows, R, H]."""
    out = torch.zeros(labels.shape, dtype=torch.float32, device=hidden.device)
    where = mask.bool()
    flat_h, flat_y = hidden[where], labels[where]
    parts = []
    for start in range(0, flat_h.shape[0], chunk):
        h, y = flat_h[start : start + chunk], flat_y[start : start + chunk]
        if torch.is_grad_enabled() and h.requires_grad:
            parts.append(checkpoint(_chunk_logps, head, h, y, use_reentrant=False))
        else:
            parts.append(_chunk_logps(head, h, y))
    if parts:
        out = out.masked_scatter(where, torch.cat(parts))
    return out


def _chunk_kl(head: Head, ref_head: Head, h: Tensor, ref_h: Tensor) -> tuple[Tensor, Tensor]:
    policy_logp = torch.log_softmax(head(h), dim=-1)
    with torch.no_grad():
        ref_logp = torch.log_softmax(ref_head(ref_h), dim=-1)
    diff = ref_logp - policy_logp
    return (ref_logp.exp() * diff).sum(-1), (policy_logp.exp() * -diff).sum(-1)


def chunked_kl(head: Head, ref_head: Head, hidden: Tensor, ref_hidden: Tensor, mask: Tensor,
               chunk: int = DEFAULT_CHUNK) -> tuple[Tensor, Tensor]:
    """(KL(ref || policy), KL(policy || ref)) per token [rows, R], computed only where `mask` is 1."""
    where = mask.bool()
    fwd = torch.zeros(mask.shape, dtype=torch.float32, device=hidden.device)
    rev = torch.zeros_like(fwd)
    flat_h, flat_r = hidden[where], ref_hidden[where].detach()
    f_parts, r_parts = [], []
    for start in range(0, flat_h.shape[0], chunk):
        h, r = flat_h[start : start + chunk], flat_r[start : start + chunk]
        if torch.is_grad_enabled() and h.requires_grad:
            f, b = checkpoint(_chunk_kl, head, ref_head, h, r, use_reentrant=False)
        else:
            f, b = _chunk_kl(head, ref_head, h, r)
        f_parts.append(f)
        r_parts.append(b)
    if f_parts:
        fwd = fwd.masked_scatter(where, torch.cat(f_parts))
        rev = rev.masked_scatter(where, torch.cat(r_parts))
    return fwd, rev
