"""Image features once per image per step, for a frozen vision tower (the FiRe-MPO setup: LoRA on the
language model only, so policy and reference share the vision tower and projector).

Why it is exact: a batch's rows are the chosen responses, then the rejected ones, of the same prompts and
images (trainer/data.py), so the per-image inputs of the second half repeat the first half. The vision
tower and projector run once, under no_grad, on the first half (one forward per image), and every scoring
forward of the step (policy and reference, chosen and rejected rows) gets those features through
transformers' `mm_encoder_outputs` instead of `pixel_values` (models/base.py, `with_image_features`).
Families whose adapter has no `feature_inputs` keep the plain path.
"""

from __future__ import annotations

import copy

from torch import Tensor


def first_half(adapter, inputs: dict[str, Tensor], rows: int) -> dict[str, Tensor]:
    """The inputs of the first `rows // 2` rows: per-row (token, per-example) inputs by row, per-image
    ones by halving, since the rows' images were concatenated in row order."""
    per_row = set(adapter.token_inputs) | set(adapter.sample_inputs)
    return {k: v[: rows // 2] if k in per_row else v[: len(v) // 2] for k, v in inputs.items()}


def repeated(encoded, times: int = 2):
    """The encoder output of `times` copies of the same images: per-image feature tuples repeated
    (`pooler_output`, and Qwen3-VL's per-layer `deepstack_features`)."""
    out = copy.copy(encoded)
    out.pooler_output = tuple(encoded.pooler_output) * times
    if getattr(encoded, "deepstack_features", None) is not None:
        out.deepstack_features = [tuple(layer) * times for layer in encoded.deepstack_features]
    return out


class SharedImageFeatures:
    """One step's image features, keyed by the image-input dict they were computed for (the clean and the
    corrupted images of the batch); `inputs()` returns body inputs that reuse them."""

    def __init__(self, adapter):
        self.adapter = adapter
        self.encoded: dict[int, object] = {}

    def inputs(self, body, image_inputs: dict[str, Tensor], rows: int) -> dict:
        if "pixel_values" not in image_inputs or not self.adapter.encodes_images:
            return image_inputs
        key = id(image_inputs)
        if key not in self.encoded:
            half = first_half(self.adapter, image_inputs, rows)
            self.encoded[key] = repeated(self.adapter.encode_images(body, half))
        return self.adapter.with_image_features(image_inputs, self.encoded[key])


def shares_image_features(adapter, policy, reference) -> bool:
    """Whether one encoding per image is exact here: the family takes precomputed features, nothing in the
    vision tower or projector trains, and the reference uses the policy's own vision tower (LoRA)."""
    from trainer.model import VISION_PARTS

    frozen = not any(p.requires_grad for name, p in policy.named_parameters() if VISION_PARTS.search(name))
    return adapter.encodes_images and frozen and reference.uses_adapters
