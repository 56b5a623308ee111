"""Plain causal language models (Llama, Qwen2/3, Mistral, Gemma ...) for text-only shards.

Why an adapter: a text-only model loads with AutoModelForCausalLM, renders string content with its
tokenizer's chat template, and must refuse images with a clear error instead of dropping them.
"""

from __future__ import annotations

from models.base import AdapterError, ModelAdapter


class CausalLMAdapter(ModelAdapter):
    name = "causal-lm"
    model_types = ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "phi3")
    vision = False

    def load_processor(self):
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(str(self.model_dir))
        except Exception as e:  # noqa: BLE001
            raise AdapterError(f"model {self.model_dir} ({self.name}): cannot load its tokenizer: "
                               f"{' '.join(str(e).split())[:300]}") from e

    def encode_prompt(self, prompt: str, images: list):
        if images:
            raise AdapterError(f"model {self.model_dir} is a text-only {self.config.get('model_type')} model but "
                               f"{len(images)} image(s) were given")
        return super().encode_prompt(prompt, images)
