"""MedAlign's two visual-alignment terms (arXiv 2512.18554) as pure tensor functions, per image.

Why per image and on the policy's own token grid: dynamic-resolution models (Qwen-VL, Idefics3 tiles)
give every image its own grid of visual tokens, so the teacher's fixed patch grid is resampled to that
grid (bilinear), never the other way round.

Spatial similarity structure. H [N, D]: the policy's hidden states of one image's N = h x w visual tokens
at a chosen layer; P [D, D]: a learnable projection initialised at zero, used residually so that training
starts from the policy's own geometry (a zero projection alone would have no cosine similarity at all);
T [Nt, Dt]: the teacher CLIP's patch features on its ht x wt grid, R(.) the bilinear resampling to h x w:

    Z = H + H P
    S_policy[i, j]  = cos(Z_i, Z_j)
    S_teacher[i, j] = cos(R(T)_i, R(T)_j)
    L_sim = mean_ij (S_policy[i, j] - S_teacher[i, j])^2

Attention distillation. A [heads, Q, N]: the policy's attention from the Q question tokens to the image's
N tokens at that layer; C [heads, Nt]: the teacher's CLS-to-patch attention. Both become distributions
over the N tokens (the original compares L2-normalised vectors; here proper distributions and KL):

    a = normalise(mean_{heads, Q} A)          t = normalise(R(mean_heads C))
    L_attn = KL(t || a) = sum_i t_i (log t_i - log a_i)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def resample_grid(x: Tensor, grid: tuple[int, int], to: tuple[int, int]) -> Tensor:
    """[h*w, C] features (row-major on an h x w grid) -> [H*W, C] on the `to` grid, bilinear."""
    h, w = grid
    if (h, w) == tuple(to):
        return x
    maps = x.T.reshape(1, x.shape[1], h, w)
    out = F.interpolate(maps.float(), size=tuple(to), mode="bilinear", align_corners=False)
    return out.reshape(x.shape[1], -1).T.to(x.dtype)


def cosine_matrix(x: Tensor, eps: float = 1e-8) -> Tensor:
    """S[i, j] = cos(x_i, x_j) for x [N, D]."""
    unit = x / x.norm(dim=-1, keepdim=True).clamp(min=eps)
    return unit @ unit.T


def similarity_structure_loss(policy_tokens: Tensor, grid: tuple[int, int], teacher_patches: Tensor,
                              teacher_grid: tuple[int, int], projection: Tensor | None = None) -> Tensor:
    """L_sim of one image (a scalar); see the module docstring."""
    if policy_tokens.shape[0] != grid[0] * grid[1]:
        raise ValueError(f"{policy_tokens.shape[0]} visual tokens for a {grid[0]}x{grid[1]} grid")
    z = policy_tokens.float()
    if projection is not None:
        z = z + z @ projection.float()
    teacher = resample_grid(teacher_patches.float(), teacher_grid, grid)
    return ((cosine_matrix(z) - cosine_matrix(teacher)) ** 2).mean()


def attention_distillation_loss(policy_attention: Tensor, teacher_cls_attention: Tensor, grid: tuple[int, int],
                                teacher_grid: tuple[int, int], eps: float = 1e-8) -> Tensor:
    """L_attn = KL(teacher || policy) over the image's tokens (a scalar); see the module docstring.

    policy_attention [heads, Q, N] (question -> image tokens), teacher_cls_attention [heads, Nt]."""
    a = policy_attention.float().mean(dim=(0, 1))
    a = a / a.sum().clamp(min=eps)
    t = teacher_cls_attention.float().mean(dim=0, keepdim=True).T  # [Nt, 1]
    t = resample_grid(t, teacher_grid, grid).squeeze(-1).clamp(min=0)
    t = t / t.sum().clamp(min=eps)
    return (t * (torch.log(t.clamp(min=eps)) - torch.log(a.clamp(min=eps)))).sum()
