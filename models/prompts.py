"""Prompts for sampling, rendered by the model's own chat template and processor.

Why the model's own template: a policy answers best (and is trained on) the exact layout it was tuned
with. Qwen2-VL / Qwen2.5-VL / Qwen3-VL wrap each image as ``<|vision_start|><|image_pad|><|vision_end|>``
inside ChatML, LLaVA writes ``USER: <image>\\n... ASSISTANT:``, HuatuoGPT-Vision's Qwen2.5-VL release uses
Qwen2.5-VL's. Hand-written prompt strings drift from those; rendering the same chat messages through
``apply_chat_template`` of whatever processor (or tokenizer) the model folder ships keeps every backend
(transformers, vLLM offline, the OpenAI-compatible server) on one prompt.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from schemas.sample import Sample

DEFAULT_PROMPTS = {
    "report": "Describe the findings in this image.",
    "vqa": "Answer the question about this image.",
}
# Bump when the message layout below changes: it enters the prompt-template hash in each pair's meta.
MESSAGE_LAYOUT = "v1:user[image*k,text]"


class PromptError(ValueError):
    """A prompt that cannot be built for a model; the message is one line naming the model or sample."""


class ImageLoadError(PromptError):
    """A sample image that cannot be read."""


def user_text(sample: Sample) -> str:
    """The user's turn: the sample's prompt (for ``vqa`` the question), or the task's default."""
    text = (sample.prompt or "").strip()
    return text or DEFAULT_PROMPTS[sample.task]


def chat_messages(text: str, num_images: int, system: str | None = None, as_string: bool = False) -> list[dict]:
    """One user turn with ``num_images`` image parts before the text (the layout every supported VLM
    documents). ``as_string``: plain-string content, for text-only templates that cannot read parts."""
    if as_string:
        if num_images:
            raise PromptError("string content cannot carry images")
        content: Any = text
    else:
        content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": text}]
    messages = [{"role": "system", "content": system if as_string else [{"type": "text", "text": system}]}] if system else []
    return messages + [{"role": "user", "content": content}]


def _template_of(renderer: Any) -> str | None:
    template = getattr(renderer, "chat_template", None)
    if template is None and hasattr(renderer, "tokenizer"):
        template = getattr(renderer.tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the default one renders chats
        template = template.get("default") or next(iter(template.values()), None)
    return template


@dataclass
class PromptBuilder:
    """Renders samples into prompt strings with one model's chat template.

    ``renderer`` is the model's processor, or its tokenizer for a text-only model; ``image_token`` is the
    placeholder the template writes per image (checked, so a template that silently drops images fails
    loudly); ``source`` names the model in errors.
    """

    renderer: Any
    source: str = "<model>"
    image_token: str | None = None
    system: str | None = None
    accepts_images: bool = True

    def __post_init__(self) -> None:
        if _template_of(self.renderer) is None:
            raise PromptError(
                f"model {self.source} has no chat template (chat_template.jinja / chat_template.json / "
                "tokenizer_config.json): add one to the model folder"
            )

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, system: str | None = None) -> PromptBuilder:
        """The processor of ``model_dir`` (its tokenizer when the folder has no processor)."""
        from transformers import AutoProcessor, AutoTokenizer

        source = str(model_dir)
        try:
            renderer = AutoProcessor.from_pretrained(source)
        except Exception as e:  # noqa: BLE001 - fall back to the tokenizer below, or report both
            try:
                renderer = AutoTokenizer.from_pretrained(source)
            except Exception as e2:  # noqa: BLE001
                raise PromptError(f"cannot load a processor or tokenizer from {source}: {e}; {e2}") from e2
        accepts_images = hasattr(renderer, "image_processor")
        tokenizer = getattr(renderer, "tokenizer", renderer)
        image_token = getattr(renderer, "image_token", None) or getattr(tokenizer, "image_token", None)
        return cls(renderer, source=source, image_token=image_token, system=system, accepts_images=accepts_images)

    @property
    def tokenizer(self) -> Any:
        return getattr(self.renderer, "tokenizer", self.renderer)

    @property
    def template_sha256(self) -> str:
        """Hash of everything that decides the prompt text besides the sample: template, layout, defaults."""
        blob = json.dumps([_template_of(self.renderer), MESSAGE_LAYOUT, DEFAULT_PROMPTS, self.system], sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def render_text(self, text: str, num_images: int) -> str:
        """The full prompt (up to the assistant's turn) for ``text`` with ``num_images`` images."""
        if num_images and not self.accepts_images:
            raise PromptError(f"model {self.source} is text-only (no image processor) but {num_images} image(s) were given")
        if num_images:
            prompt = self._render(chat_messages(text, num_images, self.system))
        else:
            # Text-only templates (Llama, plain ChatML) print string content and would print a list of parts
            # as its repr; templates that only read parts (LLaVA's) drop string content, so fall back to parts.
            try:
                prompt = self._render(chat_messages(text, 0, self.system, as_string=True))
            except PromptError:
                prompt = ""
            if text not in prompt:
                prompt = self._render(chat_messages(text, 0, self.system))
        if text not in prompt:
            raise PromptError(f"chat template of {self.source} dropped the user's text")
        if self.image_token and num_images:
            found = prompt.count(self.image_token)
            if found != num_images:
                raise PromptError(
                    f"chat template of {self.source} wrote {found} {self.image_token!r} placeholder(s) for {num_images} image(s)"
                )
        return prompt

    def render(self, sample: Sample) -> str:
        return self.render_text(user_text(sample), len(sample.images))

    def render_messages(self, messages: list[dict]) -> str:
        """Render OpenAI-style chat messages (``image_url`` parts count as images), as a server would."""
        converted = []
        for m in messages:
            content = m.get("content")
            if isinstance(content, list):
                content = [{"type": "image"} if p.get("type") in ("image", "image_url") else p for p in content]
            converted.append({"role": m.get("role", "user"), "content": content})
        return self._render(converted)

    def _render(self, messages: list[dict]) -> str:
        try:
            return self.renderer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as e:  # noqa: BLE001 - Jinja errors are long and multi-line
            raise PromptError(f"chat template of {self.source} failed: {' '.join(str(e).split())}") from e


def resolve_image_path(path: str, base_dir: str | Path | None) -> Path:
    p = Path(path)
    return p if p.is_absolute() or base_dir is None else Path(base_dir) / p


def load_sample_images(sample: Sample, base_dir: str | Path | None = None) -> list[Image.Image]:
    """The sample's images as RGB (paths relative to ``base_dir``, the manifest's folder)."""
    from PIL import Image, UnidentifiedImageError

    images = []
    for i, rel in enumerate(sample.images):
        path = resolve_image_path(rel, base_dir)
        try:
            with Image.open(path) as im:
                images.append(im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise ImageLoadError(f"sample {sample.sample_id!r}: field 'images[{i}]': cannot read {str(path)!r}: {reason}") from e
    return images


def stop_truncate(text: str, stop: Sequence[str] | None) -> str:
    """Cut ``text`` at the first stop string (as vLLM and the OpenAI API do; the stop string is dropped)."""
    cut = len(text)
    for s in stop or ():
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut]
