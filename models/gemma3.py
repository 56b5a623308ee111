"""Gemma 3: `<start_of_image>` in the prompt, expanded by the processor to the soft-token block.

Why `token_type_ids` matter: they are 1 on image tokens, where Gemma 3 attends bidirectionally; they are
padded over the sequence like the ids (0 on response and padding). The processor is given the images of
one example at a time (a flat list over a batch is split wrongly).
"""

from __future__ import annotations

from models.base import ModelAdapter


class Gemma3Adapter(ModelAdapter):
    name = "gemma3"
    model_types = ("gemma3",)
    token_inputs = {"token_type_ids": 0}
