"""Tiny random-weight models of every supported family, built offline from configs.

Why: the adapters (models/) must be tested on the real model classes, processors and chat templates of
each family, on a CPU, with nothing downloaded. Each builder writes a folder that loads like a hub
checkpoint of that family: config, weights, a tokenizer (the project's BPE plus the family's special
tokens, so shard token ids stay valid), an image processor (the PIL one: no torchvision) and a chat
template written here after the family's own (models/templates/).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import transformers as tf

TEMPLATES = Path(__file__).resolve().parent / "templates"
HIDDEN = 64  # language-model width of every tiny model


def _template(name: str) -> str:
    return (TEMPLATES / f"{name}.jinja").read_text().strip("\n")


def family_tokenizer(named: dict[str, str] | None = None, extra: list[str] | None = None,
                     template: str | None = None, bos: str | None = None, add_bos: bool = False):
    """The project tokenizer with the family's special tokens (`named`: attribute -> token, e.g.
    image_token) and chat template; token ids of ordinary text are the project's."""
    from models.tiny_model import TOKENIZER_DIR

    named = dict(named or {})
    kwargs = {"extra_special_tokens": named} if named else {}
    tok = tf.AutoTokenizer.from_pretrained(str(TOKENIZER_DIR), **kwargs)
    if extra:
        tok.add_special_tokens({"additional_special_tokens": extra}, replace_extra_special_tokens=False)
    if bos is not None:
        tok.add_special_tokens({"bos_token": bos})
    if add_bos:
        tok.add_bos_token = True
        tok.update_post_processor()
    if template is not None:
        tok.chat_template = template
    return tok


def _text(tok, cls=tf.LlamaConfig, **kw):
    base = dict(vocab_size=len(tok), hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                tie_word_embeddings=False)
    base.update(kw)
    return cls(**base)


def _save(model, processor, out: Path, tok) -> Path:
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


QWEN_TOKENS = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
               "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>"}


def _qwen_tokenizer(template: str):
    tok = family_tokenizer(QWEN_TOKENS, extra=["<|im_start|>", "<|im_end|>"], template=_template(template))
    return tok


def _qwen_ids(tok) -> dict:
    ids = {k: tok.convert_tokens_to_ids(v) for k, v in QWEN_TOKENS.items()}
    return dict(image_token_id=ids["image_token"], video_token_id=ids["video_token"],
                vision_start_token_id=ids["vision_start_token"], vision_end_token_id=ids["vision_end_token"])


def _qwen_image_processor(patch: int):
    unit = patch * 2  # patch x merge size
    return tf.Qwen2VLImageProcessorPil(patch_size=patch, merge_size=2, temporal_patch_size=2,
                                       size={"shortest_edge": (2 * unit) ** 2, "longest_edge": (4 * unit) ** 2})


def _save_qwen(model, tok, patch: int, out: Path) -> Path:
    """Qwen-VL folders: tokenizer + image processor + template (the processor class needs torchvision)."""
    _save(model, tok, out, tok)
    _qwen_image_processor(patch).save_pretrained(out)
    return out


def build_qwen2_vl(out: Path, vocab_size: int | None = None) -> Path:
    tok = _qwen_tokenizer("qwen2_vl")
    text = dict(_text(tok, tf.Qwen2VLTextConfig).to_dict(), rope_parameters={
        "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]})
    if vocab_size:
        text["vocab_size"] = vocab_size
    vision = dict(depth=2, embed_dim=32, hidden_size=HIDDEN, num_heads=2, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2)
    config = tf.Qwen2VLConfig(text_config=text, vision_config=vision, **_qwen_ids(tok))
    return _save_qwen(tf.Qwen2VLForConditionalGeneration(config), tok, 14, out)


def build_qwen2_5_vl(out: Path) -> Path:
    tok = _qwen_tokenizer("qwen2_vl")
    text = dict(_text(tok, tf.Qwen2_5_VLTextConfig).to_dict(), rope_parameters={
        "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]})
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=HIDDEN, window_size=56, fullatt_block_indexes=[1])
    config = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **_qwen_ids(tok))
    return _save_qwen(tf.Qwen2_5_VLForConditionalGeneration(config), tok, 14, out)


def build_qwen3_vl(out: Path) -> Path:
    tok = _qwen_tokenizer("qwen3_vl")
    text = dict(_text(tok, tf.Qwen3VLTextConfig, head_dim=16).to_dict(), rope_parameters={
        "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], "mrope_interleaved": True})
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16, spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=HIDDEN, num_position_embeddings=64,
                  deepstack_visual_indexes=[1])
    config = tf.Qwen3VLConfig(text_config=text, vision_config=vision, **_qwen_ids(tok))
    return _save_qwen(tf.Qwen3VLForConditionalGeneration(config), tok, 16, out)


def _clip(image_size: int, patch: int) -> tf.CLIPVisionConfig:
    return tf.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               image_size=image_size, patch_size=patch, projection_dim=32)


def build_llava(out: Path) -> Path:
    from models.tiny_model import build_tiny_model

    return build_tiny_model(out)


def build_llava_next(out: Path) -> Path:
    tok = family_tokenizer(template=_template("llava"))
    size, patch = 32, 16
    config = tf.LlavaNextConfig(vision_config=_clip(size, patch), text_config=_text(tok),
                                image_token_id=tok.image_token_id, vision_feature_select_strategy="default",
                                vision_feature_layer=-1, image_grid_pinpoints=[[32, 64], [64, 32], [64, 64]],
                                image_seq_length=(size // patch) ** 2)
    image_processor = tf.LlavaNextImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size},
        image_grid_pinpoints=[[32, 64], [64, 32], [64, 64]])
    processor = tf.LlavaNextProcessor(image_processor=image_processor, tokenizer=tok, patch_size=patch,
                                      vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                      chat_template=tok.chat_template)
    return _save(tf.LlavaNextForConditionalGeneration(config), processor, out, tok)


def build_idefics3(out: Path) -> Path:
    tok = family_tokenizer(
        {"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
         "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"},
        extra=["<|im_start|>"] + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)],
        template=_template("idefics3"))
    size, patch = 32, 8
    vision = tf.Idefics3VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, image_size=size, patch_size=patch)
    config = tf.Idefics3Config(vision_config=vision, text_config=_text(tok), scale_factor=2,
                               image_token_id=tok.convert_tokens_to_ids("<image>"), pad_token_id=tok.pad_token_id)
    image_processor = tf.Idefics3ImageProcessorPil(size={"longest_edge": 2 * size},
                                                   max_image_size={"longest_edge": size}, do_image_splitting=True)
    processor = tf.Idefics3Processor(image_processor=image_processor, tokenizer=tok,
                                     image_seq_len=(size // patch) ** 2 // 4, chat_template=tok.chat_template)
    return _save(tf.Idefics3ForConditionalGeneration(config), processor, out, tok)


def build_gemma3(out: Path) -> Path:
    tok = family_tokenizer({"image_token": "<image_soft_token>", "boi_token": "<start_of_image>",
                            "eoi_token": "<end_of_image>"}, extra=["<start_of_turn>", "<end_of_turn>"],
                           template=_template("gemma3"), add_bos=True)
    size, patch, tokens = 32, 8, 4
    vision = tf.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=2, image_size=size, patch_size=patch)
    text = _text(tok, tf.Gemma3TextConfig, head_dim=16, sliding_window=64, query_pre_attn_scalar=16)
    ids = {k: tok.convert_tokens_to_ids(v) for k, v in
           (("boi_token_index", "<start_of_image>"), ("eoi_token_index", "<end_of_image>"),
            ("image_token_index", "<image_soft_token>"))}
    config = tf.Gemma3Config(vision_config=vision, text_config=text, mm_tokens_per_image=tokens, **ids)
    image_processor = tf.Gemma3ImageProcessorPil(size={"height": size, "width": size})
    processor = tf.Gemma3Processor(image_processor=image_processor, tokenizer=tok, image_seq_length=tokens,
                                   chat_template=tok.chat_template)
    return _save(tf.Gemma3ForConditionalGeneration(config), processor, out, tok)


def build_paligemma(out: Path) -> Path:
    tok = family_tokenizer({"image_token": "<image>"})
    tok.chat_template = None
    size, patch = 32, 8
    image_processor = tf.SiglipImageProcessorPil(size={"height": size, "width": size})
    image_processor.image_seq_length = (size // patch) ** 2
    processor = tf.PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok)  # adds its loc/seg tokens
    vision = tf.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=2, image_size=size, patch_size=patch, projection_dim=HIDDEN)
    text = _text(tok, tf.GemmaConfig, head_dim=16)
    config = tf.PaliGemmaConfig(vision_config=vision, text_config=text, projection_dim=HIDDEN,
                                image_token_index=tok.image_token_id)
    return _save(tf.PaliGemmaForConditionalGeneration(config), processor, out, tok)


def build_llama(out: Path) -> Path:
    tok = family_tokenizer(extra=["<|im_start|>", "<|im_end|>"], template=_template("chatml"), add_bos=True)
    return _save(tf.LlamaForCausalLM(_text(tok)), tok, out, tok)


def build_qwen2(out: Path) -> Path:
    tok = family_tokenizer(extra=["<|im_start|>", "<|im_end|>"], template=_template("chatml"))
    return _save(tf.Qwen2ForCausalLM(_text(tok, tf.Qwen2Config)), tok, out, tok)


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "qwen2_vl": build_qwen2_vl, "qwen2_5_vl": build_qwen2_5_vl, "qwen3_vl": build_qwen3_vl,
    "llava": build_llava, "llava_next": build_llava_next, "idefics3": build_idefics3, "gemma3": build_gemma3,
    "paligemma": build_paligemma, "llama": build_llama, "qwen2": build_qwen2,
}


def build_tiny(family: str, out: Path, seed: int = 0) -> Path:
    """Write the tiny random-weight model of `family` (a key of BUILDERS) into `out`."""
    if family not in BUILDERS:
        raise ValueError(f"unknown tiny family {family!r}; valid: {', '.join(BUILDERS)}")
    torch.manual_seed(seed)
    return BUILDERS[family](Path(out))
