"""Optional: a diffusers inpainting pipeline from a local model folder.

Generative inpainting gives the most realistic fill, but it needs the ``diffusers`` package and a
model folder on disk (a Stable-Diffusion-style inpainting checkpoint saved with ``save_pretrained``).
Nothing is downloaded: construction fails with a clear ``CorruptorUnavailable`` when either is
missing, and ``diffusers`` is imported only on the first call. The pipeline sees a square crop around
the mask at ``size`` pixels; the fill is resized back and pasted inside the mask only.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np

from corruptors.base import (
    CorruptionContext,
    CorruptorUnavailable,
    check_inputs,
    composite,
    mask_bbox,
    register,
)

MODEL_ENV = "MEDPREF_INPAINT_MODEL"


@register("inpaint_diffusion")
class DiffusionInpaint:
    """``model_dir`` (or the ``MEDPREF_INPAINT_MODEL`` environment variable): a local diffusers folder."""

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        prompt: str = "normal healthy lung tissue, frontal chest x-ray",
        steps: int = 20,
        size: int = 512,
        device: str = "cpu",
    ):
        model_dir = model_dir or os.environ.get(MODEL_ENV)
        if not model_dir:
            raise CorruptorUnavailable(
                f"inpaint_diffusion needs model_dir=<local diffusers folder> (or ${MODEL_ENV}); nothing is downloaded"
            )
        path = Path(model_dir)
        if not (path / "model_index.json").is_file():
            raise CorruptorUnavailable(
                f"inpaint_diffusion: {path} is not a local diffusers model folder (no model_index.json); "
                "nothing is downloaded"
            )
        if importlib.util.find_spec("diffusers") is None:
            raise CorruptorUnavailable(
                "inpaint_diffusion needs the 'diffusers' package: pip install diffusers"
            )
        self.model_dir, self.prompt, self.steps, self.size, self.device = (
            path,
            prompt,
            int(steps),
            int(size),
            device,
        )
        self._pipe = None

    def _pipeline(self):
        if self._pipe is None:
            from diffusers import AutoPipelineForInpainting  # lazy: heavy, optional

            pipe = AutoPipelineForInpainting.from_pretrained(str(self.model_dir), local_files_only=True)
            pipe.set_progress_bar_config(disable=True)
            self._pipe = pipe.to(self.device)
        return self._pipe

    def __call__(self, image, mask, rng, context: CorruptionContext | None = None) -> np.ndarray:
        import torch
        from PIL import Image

        check_inputs(image, mask)
        box = mask_bbox(mask)
        if box is None:
            return image.copy()
        h, w = mask.shape
        x1, y1, x2, y2 = box
        side = min(max(w, h), max(x2 - x1, y2 - y1) * 2)  # a square crop with context around the mask
        cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
        sx1 = int(np.clip(cx - side // 2, 0, max(0, w - side)))
        sy1 = int(np.clip(cy - side // 2, 0, max(0, h - side)))
        crop_box = (sx1, sy1, min(w, sx1 + side), min(h, sy1 + side))
        cx1, cy1, cx2, cy2 = crop_box
        crop = image[cy1:cy2, cx1:cx2]
        rgb = cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB) if crop.ndim == 2 else crop
        m8 = mask[cy1:cy2, cx1:cx2].astype(np.uint8) * 255
        generator = torch.Generator(device="cpu").manual_seed(int(rng.integers(0, 2**63 - 1)))
        result = self._pipeline()(
            prompt=self.prompt,
            image=Image.fromarray(rgb).resize((self.size, self.size), Image.BICUBIC),
            mask_image=Image.fromarray(m8).resize((self.size, self.size), Image.NEAREST),
            num_inference_steps=self.steps,
            generator=generator,
        ).images[0]
        fill = np.asarray(result.convert("RGB").resize((cx2 - cx1, cy2 - cy1), Image.BICUBIC))
        if image.ndim == 2:
            fill = cv2.cvtColor(fill, cv2.COLOR_RGB2GRAY)
        return composite(image, fill, mask, crop_box)
