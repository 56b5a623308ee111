"""trainer/losses.py against CONTRACT.md section 5, with expected values hand-computed in plain Python."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.losses import preference_loss, sequence_logps, token_kl
from trainer.presets import PRESETS, get_preset


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


# Two pairs, three response tokens each; pair 1 has a padded last token (masks 0 there).
PC = [[-1.0, -2.0, -0.5], [-0.3, -1.2, -9.0]]
PR = [[-1.5, -0.7, -2.0], [-2.2, -0.4, -9.0]]
RC = [[-1.2, -2.5, -0.4], [-0.9, -1.0, -9.0]]
RR = [[-1.1, -0.9, -1.0], [-1.0, -0.8, -9.0]]
CM = [[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]  # edit masks
RM = [[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
ALL = [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]  # every real response token (DPO)
PCC = [[-1.4, -2.1, -0.6], [-0.5, -1.9, -9.0]]  # under the corrupted image
PRC = [[-1.0, -0.5, -1.7], [-1.8, -0.6, -9.0]]
RCC = [[-1.3, -2.2, -0.5], [-0.8, -1.1, -9.0]]
RRC = [[-1.2, -0.8, -1.4], [-1.1, -0.9, -9.0]]
KLF = [[0.02, 0.05, 0.30], [0.01, 0.07, 0.90]]
KLR = [[0.03, 0.01, 0.20], [0.04, 0.02, 0.80]]


def S(x, y, m):
    return [sum((a - b) * w for a, b, w in zip(xr, yr, mr, strict=True)) for xr, yr, mr in zip(x, y, m, strict=True)]


def expected(beta, gamma, lambda_, alpha, cm, rm, visual=True, kl=True):
    """The contract's formula, pair by pair, in floats."""
    rank = [-logsig(beta * (c - r)) for c, r in zip(S(PC, RC, cm), S(PR, RR, rm), strict=True)]
    vis = [-logsig(beta * (r - c)) for c, r in zip(S(PCC, RCC, cm), S(PRC, RRC, rm), strict=True)]
    kls = [sum((lambda_ * f + (1 - lambda_) * r) * w for f, r, w in zip(fr, rr, mr, strict=True))
           for fr, rr, mr in zip(KLF, KLR, cm, strict=True)]
    return [rank[i] + gamma * (vis[i] if visual else 0.0) + alpha * (kls[i] if kl else 0.0) for i in range(2)]


def T(x):
    return torch.tensor(x, dtype=torch.float64)


def call(preset, cm, rm, visual=True, kl=True):
    corrupt = dict(policy_chosen_corrupt=T(PCC), policy_rejected_corrupt=T(PRC),
                   ref_chosen_corrupt=T(RCC), ref_rejected_corrupt=T(RRC)) if visual else {}
    kls = dict(kl_forward=T(KLF), kl_reverse=T(KLR)) if kl else {}
    return preference_loss(T(PC), T(PR), T(RC), T(RR), T(cm), T(rm), **corrupt, **kls, **preset.loss_kwargs())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_preset_equals_the_contract_formula(name):
    preset = get_preset(name)
    cm, rm = (CM, RM) if preset.use_edit_masks else (ALL, ALL)
    losses, _ = call(preset, cm, rm)
    want = expected(preset.beta, preset.gamma, preset.lambda_, preset.alpha, cm, rm)
    assert losses.tolist() == pytest.approx(want, abs=1e-6)


def test_presets_have_the_papers_settings():
    assert (PRESETS["dpo"].gamma, PRESETS["dpo"].alpha, PRESETS["dpo"].use_edit_masks) == (0, 0, False)
    assert (PRESETS["mask-dpo"].gamma, PRESETS["mask-dpo"].alpha, PRESETS["mask-dpo"].use_edit_masks) == (0, 0, True)
    assert (PRESETS["rrpo"].gamma, PRESETS["rrpo"].lambda_) == (0, 1)
    fire = PRESETS["fire-mpo"]
    assert (fire.beta, fire.gamma, fire.lambda_, fire.alpha) == (0.1, 0.1, 0.5, 0.01)


def test_fire_mpo_hand_value_on_one_pair():
    # Pair 0, fire-mpo, worked out by hand:
    # rank: S_c = (-1+1.2) + (-2+2.5) = 0.7; S_r = (-0.7+0.9) + (-2+1) = -0.8; -logsig(0.1 * 1.5)
    # visual: S_rc = (-0.5+0.8) + (-1.7+1.4) = 0.0; S_cc = (-1.4+1.3) + (-2.1+2.2) = 0.0; -logsig(0) = ln 2
    # kl: 0.5*(0.02+0.05) + 0.5*(0.03+0.01) = 0.055
    want = math.log1p(math.exp(-0.15)) + 0.1 * math.log(2) + 0.01 * 0.055
    losses, _ = call(get_preset("fire-mpo"), CM, RM)
    assert losses[0].item() == pytest.approx(want, abs=1e-9)


def test_missing_terms_are_zero_and_visual_mask_drops_pairs():
    preset = get_preset("fire-mpo")
    no_terms, _ = call(preset, CM, RM, visual=False, kl=False)
    assert no_terms.tolist() == pytest.approx(expected(0.1, 0.1, 0.5, 0.01, CM, RM, False, False), abs=1e-9)
    full, _ = call(preset, CM, RM)
    masked, metrics = preference_loss(
        T(PC), T(PR), T(RC), T(RR), T(CM), T(RM), T(PCC), T(PRC), T(RCC), T(RRC), T(KLF), T(KLR),
        visual_mask=T([1.0, 0.0]), **preset.loss_kwargs())
    assert masked[0].item() == pytest.approx(full[0].item(), abs=1e-12)
    want_1 = expected(0.1, 0.1, 0.5, 0.01, CM, RM, visual=False)[1]
    assert masked[1].item() == pytest.approx(want_1, abs=1e-12)
    # the visual metric averages over pairs that have a corrupted image only
    vis0 = -logsig(0.1 * (S(PRC, RRC, RM)[0] - S(PCC, RCC, CM)[0]))
    assert metrics["visual"] == pytest.approx(vis0, abs=1e-9)


def test_metrics_rewards_margin_accuracy():
    _, m = call(get_preset("mask-dpo"), CM, RM)
    c, r = S(PC, RC, CM), S(PR, RR, RM)  # pair 0: 0.7 vs -0.8; pair 1: -0.2 vs -0.8
    assert m["chosen_reward"] == pytest.approx(0.1 * (c[0] + c[1]) / 2)
    assert m["rejected_reward"] == pytest.approx(0.1 * (r[0] + r[1]) / 2)
    assert m["margin"] == pytest.approx(0.1 * ((c[0] - r[0]) + (c[1] - r[1])) / 2)
    assert m["reward_accuracy"] == 1.0
    # swap chosen and rejected of pair 1 only: that pair is now ranked wrong
    swap = [[PC[0], PR[1]], [PR[0], PC[1]], [RC[0], RR[1]], [RR[0], RC[1]], [CM[0], RM[1]], [RM[0], CM[1]]]
    _, m = preference_loss(*(T(x) for x in swap), beta=0.1, gamma=0, alpha=0)
    assert m["reward_accuracy"] == 0.5


def test_gradient_only_reaches_masked_tokens_and_favours_chosen():
    pc = T(PC).requires_grad_(True)
    pr = T(PR).requires_grad_(True)
    losses, _ = preference_loss(pc, pr, T(RC), T(RR), T(CM), T(RM), beta=0.1, gamma=0, alpha=0)
    losses.sum().backward()
    assert (pc.grad[T(CM) == 0] == 0).all() and (pr.grad[T(RM) == 0] == 0).all()
    assert (pc.grad[T(CM) == 1] < 0).all()  # descending the loss raises chosen log-probs
    assert (pr.grad[T(RM) == 1] > 0).all()  # and lowers rejected ones


def test_forward_and_reverse_kl_are_each_the_right_direction():
    # One token, two-word vocabulary: p_ref = (0.9, 0.1), p_policy = (0.5, 0.5).
    ref_logits = torch.log(T([[[0.9, 0.1]]]))
    pol_logits = torch.log(T([[[0.5, 0.5]]]))
    fwd, rev = token_kl(pol_logits, ref_logits)
    kl_ref_policy = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)  # 0.3681
    kl_policy_ref = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)  # 0.5108
    assert abs(kl_ref_policy - kl_policy_ref) > 0.1
    assert fwd.item() == pytest.approx(kl_ref_policy, abs=1e-6)
    assert rev.item() == pytest.approx(kl_policy_ref, abs=1e-6)
    # RRPO (lambda 1) uses the forward direction only; lambda 0 the reverse
    one = T([[1.0]])
    zero = T([[0.0]])
    for lam, want in ((1.0, kl_ref_policy), (0.0, kl_policy_ref)):
        losses, _ = preference_loss(zero, zero, zero, zero, one, one, kl_forward=fwd.double(),
                                    kl_reverse=rev.double(), beta=0.1, gamma=0, lambda_=lam, alpha=1.0)
        assert losses.item() == pytest.approx(math.log(2) + want, abs=1e-6)


def test_sequence_logps_gathers_label_log_probs_and_masks():
    logits = torch.log(T([[[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [0.1, 0.1, 0.8]]]))
    labels = torch.tensor([[0, 2, -100]])
    out = sequence_logps(logits, labels)
    assert out.tolist()[0] == pytest.approx([math.log(0.7), math.log(0.5), 0.0], abs=1e-6)
    out = sequence_logps(logits, torch.tensor([[1, 1, 2]]), T([[0, 1, 1]]))
    assert out.tolist()[0] == pytest.approx([0.0, math.log(0.25), math.log(0.8)], abs=1e-6)


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError) as err:
        get_preset("ppo")
    for name in PRESETS:
        assert name in str(err.value)
    assert get_preset("fire-mpo", beta=0.5).beta == 0.5
