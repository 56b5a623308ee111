"""Qwen2-VL, Qwen2.5-VL, Qwen3-VL (and HuatuoGPT-Vision's Qwen2.5-VL release).

Why this adapter owns the processor: transformers will not build a Qwen-VL processor without torchvision
(its video processor), and PyPI torchvision breaks the CPU torch we run on. What the processor does for
images is small: the PIL image processor turns each image into flattened patches and a `(t, h, w)` grid,
and each `<|image_pad|>` of the prompt becomes `t*h*w / merge_size**2` copies. `mm_token_type_ids` (1 on
image tokens) feeds the multimodal rotary index and is padded over the sequence like the ids.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from models.base import AdapterError, ModelAdapter


class QwenVLInputs:
    """The parts of a Qwen-VL processor this project uses: tokenizer, PIL image processor, chat template."""

    image_token = "<|image_pad|>"

    def __init__(self, tokenizer, image_processor):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.image_token = getattr(tokenizer, "image_token", None) or self.image_token
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)

    @property
    def chat_template(self):
        return self.tokenizer.chat_template

    def apply_chat_template(self, messages, **kwargs):
        return self.tokenizer.apply_chat_template(messages, **kwargs)

    def save_pretrained(self, out_dir) -> None:
        self.tokenizer.save_pretrained(out_dir)
        self.image_processor.save_pretrained(out_dir)


class QwenVLAdapter(ModelAdapter):
    name = "qwen-vl"
    model_types = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
    token_inputs = {"mm_token_type_ids": 0}
    feature_inputs = ("pixel_values", "image_grid_thw")  # Qwen3-VL's output also carries deepstack features

    def load_processor(self):
        from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        except Exception as e:  # noqa: BLE001
            raise AdapterError(f"model {self.model_dir} ({self.name}): cannot load its tokenizer: "
                               f"{' '.join(str(e).split())[:300]}") from e
        if not (Path(self.model_dir) / "preprocessor_config.json").is_file():
            raise AdapterError(f"model {self.model_dir} ({self.name}): no preprocessor_config.json, so no image "
                               "processor; a vision model cannot run text-only")
        try:
            image_processor = Qwen2VLImageProcessorPil.from_pretrained(str(self.model_dir))
        except Exception as e:  # noqa: BLE001
            raise AdapterError(f"model {self.model_dir} ({self.name}): cannot build its image processor: "
                               f"{' '.join(str(e).split())[:300]}") from e
        return QwenVLInputs(tokenizer, image_processor)

    def encode_prompt(self, prompt: str, images: list) -> tuple[list[int], dict[str, Tensor]]:
        if not images:
            return super().encode_prompt(prompt, images)
        proc = self.processor
        enc = proc.image_processor(images=images, return_tensors="pt")
        grid = enc["image_grid_thw"]
        merge = proc.image_processor.merge_size ** 2
        pieces = prompt.split(proc.image_token)
        if len(pieces) - 1 != len(images):
            raise AdapterError(f"model {self.model_dir}: prompt has {len(pieces) - 1} {proc.image_token!r} for "
                               f"{len(images)} image(s)")
        text = pieces[0]
        for k, piece in enumerate(pieces[1:]):
            text += proc.image_token * (int(grid[k].prod()) // merge) + piece
        ids = self.with_bos(self.tokenizer(text, add_special_tokens=False).input_ids)
        mm = (torch.tensor([ids]) == proc.image_token_id).long()
        return ids, {"pixel_values": enc["pixel_values"], "image_grid_thw": grid, "mm_token_type_ids": mm}

    def image_grids(self, extra: dict[str, Tensor], ids: list[int]) -> list[tuple[int, int]]:
        merge = self.processor.image_processor.merge_size
        return [(int(h) // merge, int(w) // merge) for _, h, w in extra["image_grid_thw"].tolist()]
