"""MedAlign's terms inside the trainer: the teacher, the learnable projection, and where in a batch the
visual tokens and question tokens of each image are. The equations are in trainer/medalign.py.

Why a separate forward of the chosen rows: the terms need one layer's hidden states and attention
weights (eager attention), which the scoring forward of trainer/logps.py does not keep.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from trainer.data import PairBatch
from trainer.logps import unwrap
from trainer.medalign import attention_distillation_loss, similarity_structure_loss


def load_teacher(teacher_dir: Path, device):
    """A local CLIP-style vision model folder (config + weights + preprocessor) -> (model, processor)."""
    from transformers import AutoImageProcessor, CLIPVisionModel

    if not (Path(teacher_dir) / "config.json").is_file():
        raise FileNotFoundError(f"--teacher {teacher_dir}: not a model folder (no config.json)")
    model = CLIPVisionModel.from_pretrained(str(teacher_dir), attn_implementation="eager").to(device).eval()
    model.requires_grad_(False)
    return model, AutoImageProcessor.from_pretrained(str(teacher_dir))


class MedAlignTerms(nn.Module):
    """Per-pair MedAlign loss [B] on the chosen rows: w_sim * L_sim + w_attn * L_attn, averaged over each
    pair's images (0 for a pair without images)."""

    def __init__(self, teacher, adapter, hidden_size: int, layer: int, sim_weight: float, attn_weight: float):
        super().__init__()
        self.teachers = [teacher]  # a list: the frozen teacher is not part of this module's state
        self.adapter, self.layer = adapter, layer
        self.sim_weight, self.attn_weight = sim_weight, attn_weight
        self.projection = nn.Parameter(torch.zeros(hidden_size, hidden_size))  # learnable, starts at zero

    def teacher_views(self, pixels: Tensor) -> tuple[Tensor, Tensor, tuple[int, int]]:
        teacher = self.teachers[0]
        with torch.no_grad():
            out = teacher(pixel_values=pixels.to(teacher.dtype), output_attentions=True)
        patches = out.last_hidden_state[:, 1:]
        cls_attention = out.attentions[-1][:, :, 0, 1:]
        side = int(round(patches.shape[1] ** 0.5))
        return patches, cls_attention, (side, side)

    def forward(self, policy, batch: PairBatch) -> tuple[Tensor, dict[str, float]]:
        n = batch.num_pairs
        losses = torch.zeros(n, device=batch.input_ids.device)
        counts = batch.teacher_counts or [0] * n
        if not any(counts):
            return losses, {"sim": 0.0, "attn": 0.0}
        body = unwrap(policy).model
        out = body(input_ids=batch.input_ids[:n], attention_mask=batch.attention_mask[:n], use_cache=False,
                   output_hidden_states=True, output_attentions=True, **batch.chosen_image_inputs(self.adapter))
        hidden, attention = out.hidden_states[self.layer], out.attentions[self.layer - 1]
        patches, cls_attention, teacher_grid = self.teacher_views(batch.teacher_pixels)
        image_id = self.adapter.image_token_id()
        sims, attns, per_pair = [], [], []
        first = 0
        for i in range(n):
            terms = []
            prompt_len = int(batch.prompt_lens[i])
            positions = (batch.input_ids[i, :prompt_len] == image_id).nonzero().squeeze(-1)
            offset = 0
            for k, (gh, gw) in enumerate(batch.image_grids[i] if counts[i] else []):
                pos = positions[offset : offset + gh * gw]
                offset += gh * gw
                question = torch.arange(int(positions[-1]) + 1, prompt_len, device=positions.device)
                sim = similarity_structure_loss(hidden[i, pos], (gh, gw), patches[first + k], teacher_grid,
                                                self.projection)
                att = attention[i][:, question][:, :, pos]
                attn = attention_distillation_loss(att, cls_attention[first + k], (gh, gw), teacher_grid)
                sims.append(float(sim.detach()))
                attns.append(float(attn.detach()))
                terms.append(self.sim_weight * sim + self.attn_weight * attn)
            first += counts[i]
            per_pair.append(torch.stack(terms).mean() if terms else losses[i])
        return torch.stack(per_pair), {"sim": sum(sims) / len(sims), "attn": sum(attns) / len(attns)}
