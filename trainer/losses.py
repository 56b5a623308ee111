"""The FiRe-MPO training objective (CONTRACT.md section 5) as pure tensor functions.

Why pure: the objective is the part a reader must be able to check against the paper line by line, and
test on hand-built tensors, without a model, a batch layout or a device in the way. Everything here takes
per-token tensors [B, T] and returns per-example losses [B].

The paper's objective, with S(x, m) = sum_t x_t m_t, r(y) = S(log pi_theta(y) - log pi_ref(y), m_y),
v clean and v~ lesion-corrupted images, y_w chosen, y_l rejected:

    L = - log sigma( beta * [ r(y_w | v)  - r(y_l | v)  ] )                      (rank: fine-grained DPO)
        - gamma * log sigma( beta * [ r(y_l | v~) - r(y_w | v~) ] )              (visual: reversed preference)
        + alpha * sum_t m_w,t [ lambda * KL(pi_ref || pi_theta)_t
                               + (1 - lambda) * KL(pi_theta || pi_ref)_t ]        (token-wise KL on y_w)

DPO, MASK-DPO and RRPO are presets of it (trainer/presets.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_sum(x: Tensor, mask: Tensor) -> Tensor:
    """S(x, m) = sum over t of x[:, t] * m[:, t]  ->  [B]."""
    return (x * mask).sum(dim=-1)


def preference_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    chosen_mask: Tensor,
    rejected_mask: Tensor,
    policy_chosen_corrupt: Tensor | None = None,
    policy_rejected_corrupt: Tensor | None = None,
    ref_chosen_corrupt: Tensor | None = None,
    ref_rejected_corrupt: Tensor | None = None,
    kl_forward: Tensor | None = None,
    kl_reverse: Tensor | None = None,
    beta: float = 0.1,
    gamma: float = 0.1,
    lambda_: float = 0.5,
    alpha: float = 0.01,
    visual_mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Per-example FiRe-MPO loss [B] and batch metrics, exactly as CONTRACT.md section 5 writes it.

    All tensors are [B, T] (per-token log-probs or per-token KL, masks 0/1 float padded with 0).
    A term whose inputs are None is 0. `visual_mask` ([B], 0/1; an addition to the contract, default all
    ones) drops the visual term for pairs that have no corrupted image.
    """
    chosen_logratio = masked_sum(policy_chosen - ref_chosen, chosen_mask)
    rejected_logratio = masked_sum(policy_rejected - ref_rejected, rejected_mask)
    chosen_rewards = beta * chosen_logratio
    rejected_rewards = beta * rejected_logratio
    rank = -F.logsigmoid(chosen_rewards - rejected_rewards)

    zeros = torch.zeros_like(rank)
    corrupt = (policy_chosen_corrupt, policy_rejected_corrupt, ref_chosen_corrupt, ref_rejected_corrupt)
    if all(t is not None for t in corrupt):
        # Under the corrupted image the preference is reversed: the rejected answer should now win.
        visual = -F.logsigmoid(
            beta
            * (
                masked_sum(policy_rejected_corrupt - ref_rejected_corrupt, rejected_mask)
                - masked_sum(policy_chosen_corrupt - ref_chosen_corrupt, chosen_mask)
            )
        )
        if visual_mask is not None:
            visual = visual * visual_mask.to(visual.dtype)
    else:
        visual = zeros

    if kl_forward is not None and kl_reverse is not None:
        kl = masked_sum(lambda_ * kl_forward + (1 - lambda_) * kl_reverse, chosen_mask)
    elif kl_forward is not None and lambda_ == 1:
        kl = masked_sum(kl_forward, chosen_mask)
    elif kl_reverse is not None and lambda_ == 0:
        kl = masked_sum(kl_reverse, chosen_mask)
    else:
        kl = zeros

    losses = rank + gamma * visual + alpha * kl

    with torch.no_grad():
        n_visual = float(visual_mask.sum()) if visual_mask is not None else float(len(rank))
        metrics = {
            "loss": float(losses.mean()),
            "rank": float(rank.mean()),
            "visual": float(visual.sum() / max(n_visual, 1.0)) if visual is not zeros else 0.0,
            "kl": float(kl.mean()),
            "chosen_reward": float(chosen_rewards.mean()),
            "rejected_reward": float(rejected_rewards.mean()),
            "margin": float((chosen_rewards - rejected_rewards).mean()),
            "reward_accuracy": float((chosen_rewards > rejected_rewards).float().mean()),
        }
    return losses, metrics


def sequence_logps(logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-token log-probs log p(labels[:, t]) from `logits[:, t]`  ->  [B, T] (0 where mask is 0).

    `logits` [B, T, V] must already be aligned with `labels` [B, T] (logits at position t predict label t;
    for a causal LM that is the model's logits shifted by one). Computed in float32 for stability.
    """
    logps = torch.log_softmax(logits.float(), dim=-1)
    safe_labels = labels.clamp(min=0)  # ignore-index (-100) positions are zeroed by the mask below
    per_token = torch.gather(logps, 2, safe_labels.unsqueeze(-1)).squeeze(-1)
    if mask is None:
        mask = (labels >= 0).to(per_token.dtype)
    return per_token * mask.to(per_token.dtype)


def token_kl(policy_logits: Tensor, ref_logits: Tensor) -> tuple[Tensor, Tensor]:
    """Per-token KL over the vocabulary: (KL(ref || policy), KL(policy || ref)), each [B, T].

    KL(ref || policy)_t = sum_v p_ref(v) (log p_ref(v) - log p_policy(v))   (forward: mass-covering)
    KL(policy || ref)_t = sum_v p_policy(v) (log p_policy(v) - log p_ref(v)) (reverse: mode-seeking)
    """
    policy_logp = torch.log_softmax(policy_logits.float(), dim=-1)
    ref_logp = torch.log_softmax(ref_logits.float(), dim=-1)
    diff = ref_logp - policy_logp
    kl_forward = (ref_logp.exp() * diff).sum(dim=-1)
    kl_reverse = (policy_logp.exp() * -diff).sum(dim=-1)
    return kl_forward, kl_reverse
