"""The model-adapter protocol: what differs between model families, in one place the sampler and the
trainer both use, so they load the same model and build exactly the same prompt tokens.

Why an adapter per family and not one generic path: families disagree on the details that decide whether
a batch is right. The image placeholder (`<image>`, `<|image_pad|>`, `<start_of_image>`), BOS, the processor
(Qwen-VL's needs torchvision here, so its adapter owns that step), and above all the extra model inputs and
how they batch: per-image tensors concatenated (`pixel_values`, `image_grid_thw`, `image_sizes`),
per-sample tensors padded over images and tiles (Idefics3's `pixel_values`, `pixel_attention_mask`), and
per-token tensors padded over the sequence (`mm_token_type_ids`, `token_type_ids`). The adapter encodes one
example at a time (so no processor ever sees a batch it splits wrongly) and collates them itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

# The placeholder the project tokenizer writes into shard prompts (TRL's plain-text convention); every
# adapter removes it, and its own placeholder, before rendering: images enter through the chat template.
SHARD_IMAGE_TOKEN = "<image>"


class AdapterError(ValueError):
    """A model folder no adapter can serve, or a processor it cannot build; one line naming the folder."""


class ModelAdapter:
    """Defaults serve processors that take `text=[str], images=[list]` for one example (LLaVA-style).

    Class attributes a family overrides:
    - `model_types`: the `config.json` model_type values it serves;
    - `vision`: False for text-only causal LMs (loaded with AutoModelForCausalLM);
    - `token_inputs`: per-token extra inputs -> the value they take on response tokens (padding is 0);
    - `sample_inputs`: extra inputs whose first dimension is the example, not the image (padded over dim 1+);
    - `dropped_inputs`: processor outputs that must never reach the model (e.g. PaliGemma's `labels`).
    """

    name: ClassVar[str] = "base"
    model_types: ClassVar[tuple[str, ...]] = ()
    vision: ClassVar[bool] = True
    token_inputs: ClassVar[dict[str, int]] = {}
    sample_inputs: ClassVar[tuple[str, ...]] = ()
    dropped_inputs: ClassVar[tuple[str, ...]] = ("labels",)

    def __init__(self, model_dir: str | Path, processor: Any | None = None):
        self.model_dir = Path(model_dir)
        self.config = read_config(self.model_dir)
        self.processor = processor if processor is not None else self.load_processor()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._prompts = None

    # -- loading ---------------------------------------------------------------------------------------
    def load_processor(self):
        """The family's processor, built from its PIL image processor (never torchvision)."""
        from transformers import AutoProcessor

        try:
            return AutoProcessor.from_pretrained(str(self.model_dir))
        except Exception as e:  # noqa: BLE001 - any failure here is one line for the user
            raise AdapterError(f"model {self.model_dir} ({self.name}): cannot build its processor: "
                               f"{' '.join(str(e).split())[:300]}") from e

    def model_class(self):
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

        return AutoModelForImageTextToText if self.vision else AutoModelForCausalLM

    def load_model(self, dtype: torch.dtype | None = None, device: str | torch.device = "cpu", path=None):
        kwargs = {"dtype": dtype} if dtype is not None else {}
        return self.model_class().from_pretrained(str(path or self.model_dir), **kwargs).to(device)

    def save_processor(self, out_dir: Path) -> None:
        self.processor.save_pretrained(out_dir)

    # -- prompts ---------------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def image_token(self) -> str | None:
        """The placeholder the chat template writes once per image."""
        return getattr(self.processor, "image_token", None) or getattr(self.tokenizer, "image_token", None)

    @property
    def renderer(self):
        """What `apply_chat_template` is called on."""
        return self.processor

    def prompt_builder(self, system: str | None = None):
        from models.prompts import PromptBuilder

        return PromptBuilder(self.renderer, source=str(self.model_dir), image_token=self.image_token,
                             system=system, accepts_images=self.vision)

    def clean_prompt(self, text: str) -> str:
        """The user's text without image placeholders a shard prompt may carry."""
        for token in {SHARD_IMAGE_TOKEN, self.image_token} - {None}:
            text = text.replace(token, "")
        return text.strip()

    def render_prompt(self, text: str, num_images: int, system: str | None = None) -> str:
        """The prompt string up to the assistant's turn, exactly as the sampler gives it to the model."""
        if self._prompts is None or self._prompts.system != system:
            self._prompts = self.prompt_builder(system)
        return self._prompts.render_text(self.clean_prompt(text), num_images)

    @property
    def adds_bos(self) -> bool:
        """True when the tokenizer itself puts BOS first (Llama, Gemma): the prompt must start with it."""
        tok = self.tokenizer
        if tok.bos_token_id is None:
            return False
        ids = tok("x").input_ids
        return bool(ids) and ids[0] == tok.bos_token_id

    def with_bos(self, ids: list[int]) -> list[int]:
        bos = self.tokenizer.bos_token_id
        return [bos] + ids if self.adds_bos and (not ids or ids[0] != bos) else ids

    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of a rendered prompt with one unexpanded placeholder per image and BOS as the trainer
        puts it: what an engine that expands placeholders itself (vLLM) takes as `prompt_token_ids`, so it
        samples from the prompt the trainer scores (tests/test_vllm_prompts.py)."""
        return self.with_bos(self.tokenizer(prompt, add_special_tokens=False).input_ids)

    def needs_added_bos(self, prompt: str) -> bool:
        """Whether the tokenizer must add BOS to this rendered prompt (the chat template did not write it):
        for a chat server that renders the template itself (vLLM's `add_special_tokens`)."""
        bos = self.tokenizer.bos_token
        return self.adds_bos and not (bos and prompt.startswith(bos))

    # -- encoding one example --------------------------------------------------------------------------
    def encode_prompt(self, prompt: str, images: list) -> tuple[list[int], dict[str, Tensor]]:
        """Token ids of a rendered prompt (image placeholders expanded, BOS once) and its extra inputs,
        for one example. Response tokens are tokenized separately and appended after these ids."""
        if not images:
            return self.with_bos(self.tokenizer(prompt, add_special_tokens=False).input_ids), {}
        enc = self.processor(text=[prompt], images=[images], return_tensors="pt", add_special_tokens=False)
        ids = enc["input_ids"][0].tolist()
        extra = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask", *self.dropped_inputs)}
        return self._fix_bos(ids, extra)

    def _fix_bos(self, ids: list[int], extra: dict[str, Tensor]) -> tuple[list[int], dict[str, Tensor]]:
        fixed = self.with_bos(ids)
        if len(fixed) != len(ids):
            for key in self.token_inputs:
                if key in extra:
                    extra[key] = torch.cat([extra[key].new_zeros(1, 1), extra[key]], dim=1)
        return fixed, extra

    def image_grids(self, extra: dict[str, Tensor], ids: list[int]) -> list[tuple[int, int]]:
        """The (rows, columns) grid of visual tokens of each image of one example (MedAlign's terms
        compare structures on this grid). Default: square blocks of image tokens."""
        image_id = self.image_token_id()
        n_images = len(extra["pixel_values"]) if "pixel_values" in extra else 0
        per = ids.count(image_id) // max(n_images, 1)
        side = int(round(per ** 0.5))
        if n_images == 0 or side * side != per:
            raise AdapterError(f"model {self.model_dir} ({self.name}): image tokens are not one square grid per "
                               "image; MedAlign's terms need one")
        return [(side, side)] * n_images

    def image_token_id(self) -> int:
        """The id of the expanded image tokens (the soft tokens the visual features replace)."""
        token = getattr(self.tokenizer, "image_token", None) or self.image_token
        return self.tokenizer.convert_tokens_to_ids(token)

    # -- image features once (frozen vision tower) ----------------------------------------------------
    # The inputs the body's `get_image_features` takes; empty: this family scores with the plain path.
    feature_inputs: ClassVar[tuple[str, ...]] = ()

    @property
    def encodes_images(self) -> bool:
        """True when the body can take precomputed image features (`mm_encoder_outputs`)."""
        return bool(self.feature_inputs)

    def encode_images(self, body, image_inputs: dict[str, Tensor]):
        """The body's image-encoder output (vision tower + projector) for `image_inputs`, under no_grad:
        with a frozen vision tower it is the same for chosen, rejected and the reference, so it is computed
        once and handed to each forward by `with_image_features`."""
        with torch.no_grad():
            return body.get_image_features(**{k: image_inputs[k] for k in self.feature_inputs if k in image_inputs},
                                           return_dict=True)

    def with_image_features(self, image_inputs: dict[str, Tensor], encoded) -> dict:
        """Body inputs that use `encoded` (transformers' `mm_encoder_outputs`) instead of running the vision
        tower; inputs the body still needs (grids for rotary positions, token types) are kept."""
        kept = {k: v for k, v in image_inputs.items() if k != "pixel_values"}
        return {**kept, "mm_encoder_outputs": {"image": encoded}}

    # -- batching --------------------------------------------------------------------------------------
    def collate(self, rows: list[tuple[list[int], dict[str, Tensor], int]], length: int,
                left_pad: bool = False) -> dict[str, Tensor]:
        """Extra inputs of a batch. `rows`: (prompt ids, extras, response length) per row, in row order;
        `length`: the padded sequence length. Per-token inputs are laid out like the ids."""
        out: dict[str, Tensor] = {}
        keys = [k for k in dict.fromkeys(k for _, extra, _ in rows for k in extra)]
        for key in keys:
            if key in self.token_inputs:
                out[key] = self._collate_tokens(key, rows, length, left_pad)
            elif key in self.sample_inputs:
                out[key] = pad_cat([extra.get(key) for _, extra, _ in rows], per_sample=True)
            else:
                out[key] = pad_cat([extra[key] for _, extra, _ in rows if key in extra])
        return out

    def _collate_tokens(self, key, rows, length, left_pad) -> Tensor:
        fill = self.token_inputs[key]
        dtype = next(extra[key].dtype for _, extra, _ in rows if key in extra)
        out = torch.zeros(len(rows), length, dtype=dtype)
        for i, (ids, extra, resp) in enumerate(rows):
            prompt = extra[key][0] if key in extra else torch.zeros(len(ids), dtype=dtype)
            seq = torch.cat([prompt.to(dtype), torch.full((resp,), fill, dtype=dtype)])
            if left_pad:
                out[i, length - len(seq):] = seq
            else:
                out[i, : len(seq)] = seq
        return out


def pad_cat(parts: list[Tensor | None], per_sample: bool = False) -> Tensor:
    """Concatenate along dim 0, zero-padding every other dimension to the largest. `per_sample`: each part
    is one example ([1, ...]); a missing one (a text-only row) becomes zeros, which the models skip as
    padding images."""
    real = [p for p in parts if p is not None]
    shape = [max(p.shape[d] for p in real) for d in range(1, real[0].dim())]
    padded = []
    for p in parts:
        if p is None:
            p = real[0].new_zeros(1, *shape)
        pad = []
        for d in reversed(range(1, p.dim())):
            pad += [0, shape[d - 1] - p.shape[d]]
        padded.append(torch.nn.functional.pad(p, pad) if any(pad) else p)
    return torch.cat(padded, dim=0)


def read_config(model_dir: Path) -> dict:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise AdapterError(f"model {model_dir}: not a model folder (no config.json)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise AdapterError(f"model {model_dir}: config.json is not JSON ({e})") from e
