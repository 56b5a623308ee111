"""A tiny random-weight vision-language model, built locally from a config (nothing downloaded).

Why: sampling and training must run offline in tests and demos, on a CPU, in milliseconds. The model is a
real `LlavaForConditionalGeneration` (CLIP vision tower, projector, Llama decoder), so every code path
that serves a full-size HF vision-language model (processor, chat template, image tokens, pixel values)
runs unchanged on it. It uses the tokenizer that ships with the project (`medpref_data/tokenizer`), so
the token ids written into shards by `build-pairs run` are the ids this model reads.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "medpref_data" / "tokenizer"

IMAGE_SIZE = 224
PATCH_SIZE = 32
# CLIP yields (224/32)^2 = 49 patch features plus a CLS token; the "default" strategy drops CLS, and the
# processor counts it with num_additional_image_tokens=1 and then removes it, so both sides agree on 49.
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2


def load_project_tokenizer(tokenizer_dir: Path = TOKENIZER_DIR):
    """The byte-level BPE tokenizer shipped with medpref (see scripts/build_tokenizer.py)."""
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"project tokenizer missing at {tokenizer_dir}: run `.venv/bin/python scripts/build_tokenizer.py`"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    if getattr(tokenizer, "image_token", None) is None:
        raise ValueError(f"tokenizer at {tokenizer_dir} has no image_token; the tiny model needs <image>")
    return tokenizer


def tiny_config(tokenizer) -> LlavaConfig:
    """Config of the tiny model: CLIP (hidden 64, 2 layers, patch 32, 224 px) + Llama (hidden 64, 2 layers)."""
    vision = CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=64,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.image_token_id,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        image_seq_length=IMAGE_TOKENS,
    )


def build_tiny_model(out_dir: Path, seed: int = 0) -> Path:
    """Write a tiny random-weight LLaVA model, its tokenizer and processor to `out_dir`; return `out_dir`.

    The same seed gives the same weights. The folder loads with `AutoModelForImageTextToText` and
    `AutoProcessor` (the processor's image side is `CLIPImageProcessorPil`, so torchvision is not needed).
    """
    out_dir = Path(out_dir)
    tokenizer = load_project_tokenizer()
    config = tiny_config(tokenizer)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=tokenizer.chat_template,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
