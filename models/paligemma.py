"""PaliGemma: no chat template; the prompt is `<image>` x N, BOS, the text and a newline.

Why `token_type_ids` are 1 on the response: PaliGemma attends bidirectionally over the prefix
(type 0: image and prompt) and causally over the suffix (type 1), which is how it was trained. The
processor's `labels` never reach the model: the trainer computes its own log-probs.
"""

from __future__ import annotations

import torch

from models.base import ModelAdapter


class PaliGemmaAdapter(ModelAdapter):
    name = "paligemma"
    model_types = ("paligemma",)
    token_inputs = {"token_type_ids": 1}

    def render_prompt(self, text: str, num_images: int, system: str | None = None) -> str:
        text = self.clean_prompt(text)
        return f"{system}\n{text}\n" if system else f"{text}\n"

    def prompt_builder(self, system: str | None = None):
        return None

    def prompt_ids(self, prompt: str) -> list[int]:
        """BOS, the text and its newline; vLLM's PaliGemma processor puts the image tokens before BOS, as
        `encode_prompt` has them."""
        return [self.tokenizer.bos_token_id, *self.tokenizer(prompt, add_special_tokens=False).input_ids]

    def encode_prompt(self, prompt: str, images: list):
        tok = self.tokenizer
        if not images:
            ids = tok(prompt, add_special_tokens=False).input_ids
            return [tok.bos_token_id, *ids], {"token_type_ids": torch.zeros(1, len(ids) + 1, dtype=torch.long)}
        enc = self.processor(text=[prompt.rstrip("\n")], images=[images], return_tensors="pt")
        ids = enc["input_ids"][0].tolist()
        return ids, {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask", *self.dropped_inputs)}
