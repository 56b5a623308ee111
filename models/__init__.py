"""Model adapters by family, picked from a model folder's config.json `model_type` (models/base.py); the
chat-template prompts every sampler and the trainer build (models/prompts.py); tiny random-weight models
built offline (models/tiny_model.py, models/tiny.py). Imports nothing of ours but ``schemas``."""

from __future__ import annotations

from pathlib import Path

from models.base import AdapterError, ModelAdapter, read_config
from models.causal_lm import CausalLMAdapter
from models.gemma3 import Gemma3Adapter
from models.idefics3 import Idefics3Adapter
from models.llava import LlavaAdapter
from models.paligemma import PaliGemmaAdapter
from models.qwen_vl import QwenVLAdapter

ADAPTERS: dict[str, type[ModelAdapter]] = {
    a.name: a for a in (QwenVLAdapter, LlavaAdapter, Idefics3Adapter, Gemma3Adapter, PaliGemmaAdapter,
                        CausalLMAdapter)
}
BY_MODEL_TYPE: dict[str, type[ModelAdapter]] = {t: a for a in ADAPTERS.values() for t in a.model_types}


def adapter_class(model_type: str) -> type[ModelAdapter]:
    if model_type not in BY_MODEL_TYPE:
        raise AdapterError(f"no model adapter for model_type {model_type!r}; valid model types: "
                           f"{', '.join(sorted(BY_MODEL_TYPE))}")
    return BY_MODEL_TYPE[model_type]


def get_adapter(model_dir: str | Path, processor=None) -> ModelAdapter:
    """The adapter for the model folder `model_dir` (chosen by its config.json `model_type`)."""
    model_type = read_config(Path(model_dir)).get("model_type")
    return adapter_class(str(model_type))(model_dir, processor)


__all__ = ["ADAPTERS", "AdapterError", "ModelAdapter", "adapter_class", "get_adapter"]
