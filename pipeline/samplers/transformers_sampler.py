"""The transformers backend: batched ``generate`` on a CPU (or one GPU), for tests, demos and small runs.

Batching several samples into one ``generate`` call shares one random stream between rows, so a sample's
responses would depend on which samples it was batched with. Here each row (sample ``i``, response ``j``)
draws from its own ``torch.Generator`` seeded from ``(seed, sample_id, j)``: the sampling step (temperature,
top-p, inverse-CDF draw) runs in a logits processor that leaves only the drawn token possible, and
``generate`` then takes it. So responses depend only on the run seed and the sample, as the ``Sampler`` protocol requires.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.prompts import (
    PromptError,
    load_sample_images,
    stop_truncate,
    user_text,
)
from pipeline.samplers.base import SamplerError, require_model_dir
from pipeline.samplers.provenance import SamplerProvenance, derive_seed, model_fingerprint

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from pipeline.samplers.base import SamplerConfig
    from schemas.sample import Sample

log = logging.getLogger(__name__)


def _seeded_sampling_processor():
    """Build the logits-processor class lazily (torch and transformers are imported only when sampling)."""
    import torch
    from transformers import LogitsProcessor

    class SeededSampling(LogitsProcessor):
        """Per-row temperature / top-p sampling, one generator per row; returns scores with one finite
        entry per row (the drawn token), so whatever decoding ``generate`` runs next takes that token."""

        def __init__(self, seeds: Sequence[int], temperature: float, top_p: float):
            self.generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
            self.temperature = float(temperature)
            self.top_p = float(top_p)

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            if self.temperature <= 0.0:  # greedy: keep only the argmax
                token = scores.argmax(dim=-1, keepdim=True)
                return torch.full_like(scores, float("-inf")).scatter_(-1, token, 0.0)
            probs = torch.softmax(scores.float() / self.temperature, dim=-1)
            if self.top_p < 1.0:
                probs, order = probs.sort(dim=-1, descending=True)
                probs = probs * ((probs.cumsum(-1) - probs) < self.top_p)  # the smallest prefix reaching top_p
            else:
                order = torch.arange(probs.shape[-1], device=probs.device).expand_as(probs)
            cdf = probs.cumsum(-1)
            u = torch.cat([torch.rand(1, generator=g) for g in self.generators]).to(scores.device)
            target = (u * cdf[:, -1]).unsqueeze(-1)
            pos = torch.searchsorted(cdf, target, right=True).clamp_(max=cdf.shape[-1] - 1)
            token = order.gather(-1, pos)
            out = torch.full_like(scores, float("-inf"))
            return out.scatter_(-1, token, 0.0)

    return SeededSampling


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TransformersSampler:
    """``n`` responses per sample from a local Hugging Face model with ``generate``.

    ``config`` supplies the model folder and sampling settings; keyword arguments override them (used by
    the benchmark and the dev server). ``base_dir`` is where relative image paths are resolved (the
    manifest's folder; the runner sets it). Samples whose images cannot be read get no responses, and
    the reason is kept in ``errors`` (the pipeline then rejects them with ``no_responses``).
    """

    name = "transformers"

    def __init__(
        self,
        config: SamplerConfig | None = None,
        *,
        model: str | Path | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_new_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        device: str | None = None,
        dtype: str | None = None,
        max_batch_rows: int = 64,
        base_dir: str | Path | None = None,
        system: str | None = None,
    ):
        model_dir = require_model_dir("transformers", model if model is not None else getattr(config, "model", None))
        import torch

        self.model_dir = str(model_dir)
        self.temperature = float(temperature if temperature is not None else getattr(config, "temperature", 0.7))
        self.top_p = float(top_p if top_p is not None else getattr(config, "top_p", 0.95))
        self.max_new_tokens = int(max_new_tokens if max_new_tokens is not None else getattr(config, "max_new_tokens", 256))
        self.stop = list(stop if stop is not None else (getattr(config, "stop", None) or []))
        self.device = device or _default_device()
        torch_dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if self.device.startswith("cuda") else None)
        self.max_batch_rows = max(1, int(max_batch_rows))
        self.base_dir = base_dir
        self.errors: dict[str, str] = {}
        self.tokens_generated = 0  # running count of sampled tokens (benchmarks, run statistics)
        from models import get_adapter

        self.system = system
        try:
            # The trainer scores pairs through the same adapter: one prompt, one tokenisation (models/).
            self.adapter = get_adapter(self.model_dir)
            self.prompts = self.adapter.prompt_builder(system)
            self.model = self.adapter.load_model(dtype=torch_dtype, device=self.device).eval()
        except (PromptError, OSError, ValueError) as e:
            raise SamplerError(f"sampler 'transformers' cannot load {self.model_dir}: {' '.join(str(e).split())}") from e
        self.tokenizer = self.adapter.tokenizer
        self.tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        import transformers

        self._provenance = SamplerProvenance(
            sampler=self.name,
            backend=f"transformers {transformers.__version__}",
            model=model_fingerprint(self.model_dir),
            sampling={"temperature": self.temperature, "top_p": self.top_p,
                      "max_new_tokens": self.max_new_tokens, "stop": self.stop},
            prompt_template_sha256=self.prompts.template_sha256 if self.prompts else f"adapter:{self.adapter.name}",
            extra={"device": self.device, "dtype": str(self.model.dtype), "seeding": "per-row generator",
                   "adapter": self.adapter.name},
        )

    # -- the Sampler protocol --------------------------------------------------------------------------
    def sample(self, samples: list[Sample], n: int, seed: int) -> list[list[str]]:
        prompts: list[str] = []
        images: list[list[Image.Image]] = []
        seeds: list[int] = []
        slots: list[int] = []  # index into samples of each prepared request
        for i, s in enumerate(samples):
            try:
                imgs = load_sample_images(s, self.base_dir)
                prompt = self.render(s)
            except PromptError as e:
                self.errors[s.sample_id] = str(e)
                log.warning("sampler 'transformers': %s", e)
                continue
            prompts.append(prompt)
            images.append(imgs)
            seeds.append(derive_seed(seed, s.sample_id))
            slots.append(i)
        out: list[list[str]] = [[] for _ in samples]
        for slot, responses in zip(slots, self.generate(prompts, images, n, seeds), strict=True):
            out[slot] = responses
        return out

    def render(self, sample: Sample) -> str:
        """The sample's prompt string, as the adapter renders it for the trainer too."""
        return self.adapter.render_prompt(user_text(sample), len(sample.images), self.system)

    def provenance(self, sample_id: str, seed: int) -> dict[str, Any]:
        return self._provenance.for_sample(sample_id, seed)

    # -- rendered prompts in, responses out (also used by the dev server) ------------------------------
    def generate(self, prompts: list[str], images: list[list[Image.Image]], n: int,
                 seeds: list[int], temperature: float | None = None, top_p: float | None = None,
                 max_new_tokens: int | None = None, stop: Sequence[str] | None = None) -> list[list[str]]:
        """``n`` responses for each rendered prompt; response ``j`` of request ``k`` draws from a generator
        seeded by ``derive_seed(seeds[k], "row", j)``."""
        per_chunk = max(1, self.max_batch_rows // max(1, n))
        out: list[list[str]] = []
        for start in range(0, len(prompts), per_chunk):
            end = start + per_chunk
            texts = self._generate_chunk(
                prompts[start:end], images[start:end], n,
                [derive_seed(s, "row", j) for s in seeds[start:end] for j in range(n)],
                self.temperature if temperature is None else temperature,
                self.top_p if top_p is None else top_p,
                self.max_new_tokens if max_new_tokens is None else max_new_tokens,
                list(self.stop if stop is None else stop),
            )
            out.extend(texts[i:i + n] for i in range(0, len(texts), n))
        return out

    def _generate_chunk(self, prompts: list[str], images: list[list[Image.Image]], n: int, row_seeds: list[int],
                        temperature: float, top_p: float, max_new_tokens: int, stop: list[str]) -> list[str]:
        """Responses for ``len(prompts) * n`` rows, ordered by prompt then response index.

        Each prompt is encoded alone by the model's adapter (image tokens expanded, BOS as the trainer puts
        it) and repeated ``n`` times; the adapter batches the extra inputs (left padding). The seeded
        processor leaves one finite score per row, so the multinomial draw of ``do_sample`` is a no-op.
        """
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        if not prompts:
            return []
        rows = []
        for prompt, imgs in zip(prompts, images, strict=True):
            ids, extra = self.adapter.encode_prompt(prompt, imgs)
            rows += [(ids, extra, 0)] * n
        length = max(len(ids) for ids, _, _ in rows)
        input_ids = torch.full((len(rows), length), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for i, (ids, _, _) in enumerate(rows):
            input_ids[i, length - len(ids):] = torch.tensor(ids)
            attention_mask[i, length - len(ids):] = 1
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask,
                  **self.adapter.collate(rows, length, left_pad=True)}
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        if "pixel_values" in inputs and self.model.dtype != torch.float32:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        eos = self.model.generation_config.eos_token_id
        gen = GenerationConfig(
            max_new_tokens=max_new_tokens, num_beams=1, num_return_sequences=1,
            do_sample=True, temperature=1.0, top_p=1.0, top_k=None,  # the draw happens in SeededSampling
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=eos if eos is not None else self.tokenizer.eos_token_id,
            stop_strings=stop or None,
        )
        processor = _seeded_sampling_processor()(row_seeds, temperature, top_p)
        extra = {"tokenizer": self.tokenizer} if stop else {}
        with torch.inference_mode():
            out = self.model.generate(**inputs, generation_config=gen,
                                      logits_processor=LogitsProcessorList([processor]), **extra)
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        self.tokens_generated += int((new_tokens != self.tokenizer.pad_token_id).sum())
        decoded = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [stop_truncate(t, stop).strip() for t in decoded]


__all__ = ["TransformersSampler"]
