"""LLaVA-1.5 and LLaVA-NeXT (LLaVA-Med and HuatuoGPT-Vision's LLaVA releases are of this kind).

Why separate entries share one adapter: both take `<image>` in the prompt and their processor expands it;
LLaVA's `pixel_values` are [images, 3, H, W], LLaVA-NeXT's [images, tiles, 3, H, W] with a tile count that
depends on the aspect ratio (padded with zero tiles, which `image_sizes` tells the model to ignore).
"""

from __future__ import annotations

from models.base import AdapterError, ModelAdapter


class LlavaAdapter(ModelAdapter):
    name = "llava"
    model_types = ("llava", "llava_next", "llava_onevision")

    def __init__(self, model_dir, processor=None):
        super().__init__(model_dir, processor)
        # LLaVA-1.5 takes precomputed image features; NeXT / OneVision pack tiles after the encoder (plain path)
        self.feature_inputs = ("pixel_values", "image_sizes") if self.config.get("model_type") == "llava" else ()

    def image_grids(self, extra, ids):
        if self.config.get("model_type") != "llava":
            raise AdapterError(f"model {self.model_dir} ({self.config.get('model_type')}): tiled images have no "
                               "single token grid; MedAlign's terms are not supported for this family")
        return super().image_grids(extra, ids)
