"""Idefics3 and SmolVLM: images split into tiles plus a global view, one `<image>` per image in the prompt.

Why per-example `pixel_values`: the processor returns [examples, images x tiles, 3, H, W] with an attention
mask per pixel; examples with fewer images or tiles (or none) are padded with all-zero tiles, which the
model drops as padding. Encoding one example at a time and padding here keeps mixed image counts and
aspect ratios in one batch.
"""

from __future__ import annotations

from models.base import AdapterError, ModelAdapter


class Idefics3Adapter(ModelAdapter):
    name = "idefics3"
    model_types = ("idefics3", "smolvlm")
    sample_inputs = ("pixel_values", "pixel_attention_mask")

    def image_grids(self, extra, ids):
        raise AdapterError(f"model {self.model_dir} ({self.name}): tiled images have no single token grid; "
                           "MedAlign's terms are not supported for this family")
