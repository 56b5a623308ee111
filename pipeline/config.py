"""The run configuration: one pydantic model per section, strict about keys, resolved once per run.

Unknown keys are errors because a misspelt option that is silently ignored produces a dataset built
with settings nobody asked for. The resolved configuration is written into ``manifest.json`` and its
hash enters every ``pair_id``, so the same input and configuration give the same ids.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.samplers.base import SamplerConfig

SAMPLER_NAMES = ("replay", "transformers", "vllm", "vllm-server")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message is one line that names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LLMEditorConfig(_Section):
    """The ``llm`` editor's model: any sampler backend over a local model folder."""

    sampler: str = "transformers"
    model: str | None = None
    server_url: str | None = None
    temperature: float = Field(0.0, ge=0.0)
    max_new_tokens: int = Field(256, ge=1)
    num_candidates: int = Field(1, ge=1)
    seed: int = 0

    def build_sampler(self):
        """The sampler the ``llm`` editor sends its rewrite requests to (so ``editors`` needs no pipeline)."""
        from pipeline.samplers import get_sampler

        return get_sampler(SamplerConfig(name=self.sampler, model=self.model, temperature=self.temperature,
                                         max_new_tokens=self.max_new_tokens, server_url=self.server_url))


class TextConfig(_Section):
    """How the text side of a pair is made (read by ``editors.text_pairs.TextPairMaker``)."""

    extractor: str = "rules"
    lexicon: str | None = None  # a lexicon YAML or a CheXpert-style phrase folder; None: the shipped one
    llm: LLMEditorConfig | None = None  # settings of the `llm` editor (add "llm" first in `editors`)
    editors: list[str] | None = None  # None: every registered editor
    inject_when_correct: bool = True
    max_response_chars: int = Field(100_000, ge=1)
    max_edit_ratio: float = Field(0.9, gt=0.0, le=1.0)  # a pair whose edits rewrite more words is rejected
    insert_incidental: bool = False  # true: also paste in omitted incidental findings (lexicon `incidental`)
    style_check: bool = True  # with a policy model (sampler.model): refuse edits far less likely than its own words
    style_margin: float = Field(2.0, gt=0.0)  # nats per token below the response's own sentences


class ImageConfig(_Section):
    """How the corrupted image is made (arguments of ``pipeline.image_stage.corrupt_images``)."""

    enabled: bool = True
    allow_absolute_paths: bool = True  # false: every image must lie inside the manifest's folder
    prompt_placeholders: bool = True  # pairs with images: the tokenizer's image token per image before the prompt
    method: str = "noise"
    margin_fraction: float = Field(0.016, ge=0.0, lt=0.5)  # of the shorter side: 16 px at 1024 px
    sigma: float = Field(45.0, gt=0.0)
    fallback_sigma: float = Field(12.0, ge=0.0)


class OutputConfig(_Section):
    """Shard layout only (never a pair's content): a shard closes at ``shard_size`` rows or
    ``max_shard_mb`` of buffered data, whichever comes first; a sample's pairs never straddle shards."""

    shard_size: int = Field(1000, ge=1)
    max_shard_mb: float = Field(512.0, gt=0)


class PipelineConfig(_Section):
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    text: TextConfig = Field(default_factory=TextConfig)
    image: ImageConfig = Field(default_factory=ImageConfig)
    tokenizer: str | None = None  # path or hub-style name of a local tokenizer; None: the bundled one
    output: OutputConfig = Field(default_factory=OutputConfig)
    seed: int = 0

    @property
    def sampler_seed(self) -> int:
        return self.seed if self.sampler.seed is None else self.sampler.seed

    def content_hash(self) -> str:
        """Hash of every setting that can change a pair's content (not the shard layout)."""
        data = self.model_dump(mode="json", exclude={"output": True, "sampler": {"concurrency", "batch_size"}})
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _section_model(loc: tuple) -> type[BaseModel]:
    """The model that owns the key at ``loc`` (to list its valid keys)."""
    model: type[BaseModel] = PipelineConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            break
    return model


def format_validation_error(err: ValidationError) -> str:
    """One line per problem (joined by '; '), naming the key; unknown keys list the valid ones."""
    parts = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc) or "<root>"
        if e["type"] == "extra_forbidden":
            section = ".".join(str(p) for p in loc[:-1])
            names = list(_section_model(loc).model_fields)
            close = difflib.get_close_matches(str(loc[-1]), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = f" in section {section!r}" if section else ""
            parts.append(f"unknown key {key!r}{where}{hint}; valid keys: {', '.join(names)}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            parts.append(f"{key}: {msg} (got {e.get('input')!r})")
    return "invalid config: " + "; ".join(parts)


def _deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _expand_overrides(overrides: dict[str, Any]) -> dict:
    """``{"sampler.model": "x", "seed": 3}`` -> nested dict; ``None`` values (flag not given) are dropped."""
    nested: dict = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict):
            nested = _deep_merge(nested, {key: value})
            continue
        *parents, leaf = key.split(".")
        node = nested
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return nested


def read_config_file(path: str | Path) -> dict:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config {str(p)!r}: {e.strerror or e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config {str(p)!r} is not valid YAML: {str(e).splitlines()[0]}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {str(p)!r} must be a mapping of sections, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Defaults < the YAML file at ``path`` < ``overrides`` (dotted keys such as ``sampler.model``)."""
    data = read_config_file(path) if path is not None else {}
    data = _deep_merge(data, _expand_overrides(overrides or {}))
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from None


__all__ = [
    "SAMPLER_NAMES", "ConfigError", "SamplerConfig", "TextConfig", "ImageConfig", "OutputConfig",
    "PipelineConfig", "load_config", "read_config_file", "format_validation_error",
]
