"""Named settings of the one objective in trainer/losses.py (DPO, MASK-DPO, RRPO, FiRe-MPO), and MedAlign's
terms (trainer/medalign.py) alone over supervised fine-tuning or added to FiRe-MPO.

Why presets and not separate losses: the paper's baselines are special cases of FiRe-MPO, so a
comparison changes only these numbers (and, for DPO, which tokens count), never the code path.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Preset:
    name: str
    beta: float
    gamma: float  # weight of the visual (corrupted-image, reversed-preference) term
    lambda_: float  # forward-KL share of the token-wise KL: lambda KL(ref||policy) + (1-lambda) KL(policy||ref)
    alpha: float  # weight of the token-wise KL on the chosen response
    use_edit_masks: bool  # True: the shard's token masks; False: every real response token (plain DPO)
    sft: bool = False  # True: supervised fine-tuning on the chosen response (no preference, no reference)
    medalign: bool = False  # True: add MedAlign's similarity-structure and attention terms (needs --teacher)
    sim_weight: float = 1.0  # weight of MedAlign's L_sim
    attn_weight: float = 1.0  # weight of MedAlign's L_attn

    @property
    def needs_corrupt(self) -> bool:
        return self.gamma != 0 and not self.sft

    @property
    def needs_kl(self) -> bool:
        return self.alpha != 0 and not self.sft

    def loss_kwargs(self) -> dict[str, float]:
        return {"beta": self.beta, "gamma": self.gamma, "lambda_": self.lambda_, "alpha": self.alpha}


PRESETS: dict[str, Preset] = {
    "dpo": Preset("dpo", beta=0.1, gamma=0.0, lambda_=0.5, alpha=0.0, use_edit_masks=False),
    "mask-dpo": Preset("mask-dpo", beta=0.1, gamma=0.0, lambda_=0.5, alpha=0.0, use_edit_masks=True),
    "rrpo": Preset("rrpo", beta=0.1, gamma=0.0, lambda_=1.0, alpha=0.01, use_edit_masks=True),
    "fire-mpo": Preset("fire-mpo", beta=0.1, gamma=0.1, lambda_=0.5, alpha=0.01, use_edit_masks=True),
    # MedAlign (arXiv 2512.18554): supervised fine-tuning on the chosen answer + its visual-alignment terms
    "medalign": Preset("medalign", beta=0.1, gamma=0.0, lambda_=0.5, alpha=0.0, use_edit_masks=False, sft=True,
                       medalign=True),
    "fire-mpo+medalign": Preset("fire-mpo+medalign", beta=0.1, gamma=0.1, lambda_=0.5, alpha=0.01,
                                use_edit_masks=True, medalign=True),
}
DEFAULT_PRESET = "fire-mpo"


def get_preset(name: str, **overrides: float | None) -> Preset:
    """The preset called `name`, with any non-None overrides (beta, gamma, lambda_, alpha) applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes) - {"beta", "gamma", "lambda_", "alpha"}
    if unknown:
        raise ValueError(f"unknown preset override(s) {sorted(unknown)}; valid: alpha, beta, gamma, lambda_")
    return replace(PRESETS[name], **changes)
