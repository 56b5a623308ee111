"""Client of an OpenAI-compatible chat server (``vllm serve``, or ``dev_server`` in tests).

Why a server: one long-lived vLLM process (data- and tensor-parallel, on the GPU machine) can serve many
pipeline workers, and a worker restart does not reload a 15 GB model. Each sample is one
``/v1/chat/completions`` request with ``n`` choices, its images inlined as base64 data URLs (the worker
and the server need not share a file system), and its own seed. The server applies the model's chat
template to the same messages ``PromptBuilder`` renders locally. Given the model folder (``model_dir``,
or a served name that is a local folder, as ``vllm serve /path`` names it), the client asks through the
model's adapter (models/) for what the trainer scores: the user text cleaned of stray placeholders and
``add_special_tokens`` set when the tokenizer, not the template, writes BOS (vLLM's chat endpoint adds no
special tokens by default).

Failures: connection resets, timeouts, HTTP 429 and 5xx are transient and retried with backoff, then
raised as ``TransientSamplerError`` (the run can be resumed); a request the server refuses as invalid
(400, 413, 422: e.g. a prompt longer than the context) fails only its sample; other 4xx (wrong model
name, auth) are configuration errors and stop the run with the server's message on one line.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.prompts import (
    DEFAULT_PROMPTS,
    MESSAGE_LAYOUT,
    ImageLoadError,
    resolve_image_path,
    stop_truncate,
    user_text,
)
from pipeline.samplers.base import SamplerError, TransientSamplerError
from pipeline.samplers.provenance import SamplerProvenance, derive_seed, sha256_text

if TYPE_CHECKING:
    from pipeline.samplers.base import SamplerConfig
    from schemas.sample import Sample

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "MEDPREF_VLLM_URL"  # used when sampler.server_url is not set (docker-compose.yml sets it)
PER_SAMPLE_STATUS = (400, 413, 422)  # the request itself is bad: only that sample fails
_MAX_ERROR_CHARS = 300
MAX_RETRY_AFTER = 30.0  # seconds: the longest Retry-After honoured
_LOOPBACK = ("127.", "localhost", "[::1]")


class _Transient(Exception):
    """One attempt failed in a way worth retrying (``wait``: the server's Retry-After, in seconds)."""

    def __init__(self, message: str, wait: float | None = None):
        super().__init__(message)
        self.wait = wait


def _retry_after(err: urllib.error.HTTPError) -> float | None:
    try:
        return min(float(err.headers.get("Retry-After", "")), MAX_RETRY_AFTER)
    except (TypeError, ValueError, AttributeError):
        return None


def _one_line(text: str, limit: int = _MAX_ERROR_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _server_message(body: bytes) -> str:
    """The ``error.message`` of an OpenAI-style error body, else the body itself."""
    try:
        data = json.loads(body)
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = err.get("message") or err.get("detail") or err if isinstance(err, dict) else err
        return _one_line(msg if isinstance(msg, str) else json.dumps(msg))
    except (ValueError, AttributeError):
        return _one_line(body.decode("utf-8", "replace"))


def image_data_url(path: Path) -> str:
    """A base64 data URL of the image file (PNG and JPEG as they are, anything else re-encoded as PNG)."""
    from PIL import Image, UnidentifiedImageError

    try:
        raw = path.read_bytes()
        with Image.open(io.BytesIO(raw)) as im:
            fmt = (im.format or "").upper()
            if fmt not in ("PNG", "JPEG"):
                buf = io.BytesIO()
                im.save(buf, format="PNG")
                raw, fmt = buf.getvalue(), "PNG"
    except (OSError, UnidentifiedImageError) as e:
        raise ImageLoadError(f"cannot read {str(path)!r}: {getattr(e, 'strerror', None) or e}") from e
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(raw).decode('ascii')}"


class VLLMServerSampler:
    """``n`` responses per sample from an OpenAI-compatible server, at most ``concurrency`` requests at once."""

    name = "vllm-server"

    def __init__(
        self,
        config: SamplerConfig | None = None,
        *,
        server_url: str | None = None,
        model: str | None = None,
        concurrency: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_new_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        timeout: float = 300.0,
        retries: int = 4,
        backoff: float = 0.5,
        base_dir: str | Path | None = None,
        system: str | None = None,
        model_dir: str | Path | None = None,
    ):
        url = server_url or getattr(config, "server_url", None) or os.environ.get(URL_ENV) or DEFAULT_URL
        self.url = url.rstrip("/").removesuffix("/v1")
        self.concurrency = int(concurrency or getattr(config, "concurrency", None) or 8)
        self.temperature = float(temperature if temperature is not None else getattr(config, "temperature", 0.7))
        self.top_p = float(top_p if top_p is not None else getattr(config, "top_p", 0.95))
        self.max_new_tokens = int(max_new_tokens if max_new_tokens is not None else getattr(config, "max_new_tokens", 256))
        self.stop = list(stop if stop is not None else (getattr(config, "stop", None) or []))
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.base_dir = base_dir
        self.system = system
        self.errors: dict[str, str] = {}
        # A server on this machine is reached directly, whatever http_proxy says; others honour it.
        host = urllib.parse.urlsplit(self.url).netloc
        direct = host.startswith(_LOOPBACK)
        self._opener = urllib.request.build_opener(*([urllib.request.ProxyHandler({})] if direct else []))
        self.model = self._resolve_model(model if model is not None else getattr(config, "model", None))
        self.adapter = self._load_adapter(model_dir if model_dir is not None else self.model)
        self._provenance = SamplerProvenance(
            sampler=self.name,
            backend="openai-http",
            model={"name": self.model, "server": self.url},
            sampling={"temperature": self.temperature, "top_p": self.top_p,
                      "max_new_tokens": self.max_new_tokens, "stop": self.stop},
            # The server owns the chat template; what the client controls is the message layout.
            prompt_template_sha256=sha256_text(json.dumps([MESSAGE_LAYOUT, DEFAULT_PROMPTS, system], sort_keys=True)),
            extra={"concurrency": self.concurrency, "adapter": self.adapter.name if self.adapter else None},
        )

    def _load_adapter(self, model_dir: str | Path | None):
        """The model's adapter when its folder is here (None otherwise: the server's template and BOS rule)."""
        if model_dir is None or not (Path(model_dir) / "config.json").is_file():
            return None
        from models import get_adapter

        try:
            return get_adapter(model_dir)
        except ValueError as e:
            raise SamplerError(f"sampler 'vllm-server': {' '.join(str(e).split())}") from e

    # -- set-up ----------------------------------------------------------------------------------------
    def _resolve_model(self, wanted: str | None) -> str:
        """The served model to ask for: ``wanted`` when the server serves it, its only model when none is named."""
        try:
            data = json.loads(self._request("GET", "/v1/models", None, timeout=10.0))
        except _Transient as e:
            raise SamplerError(
                f"vLLM server at {self.url} is not reachable ({e}): start it (`docker compose up -d vllm` or "
                f"`vllm serve MODEL`) or point sampler.server_url at it"
            ) from None
        except _Refused as e:
            raise SamplerError(f"vLLM server at {self.url} refused GET /v1/models: HTTP {e.status}: {e.message}") from None
        except (ValueError, AttributeError) as e:
            raise SamplerError(f"{self.url}/v1/models did not return JSON ({e}); is it an OpenAI-compatible server?") from None
        served = [m.get("id") for m in data.get("data", []) if isinstance(m, dict)]
        if wanted and wanted in served:
            return wanted
        if not wanted and len(served) == 1:
            return served[0]
        what = f"model {wanted!r} is not served" if wanted else "several models are served; name one with --model"
        raise SamplerError(f"vLLM server at {self.url}: {what}; served models: {', '.join(map(str, served)) or 'none'}")

    # -- HTTP ------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: dict | None, timeout: float | None = None) -> bytes:
        """One attempt. Raises ``_Transient`` (retry), ``_Refused`` (a 4xx) or returns the body."""
        data = json.dumps(body).encode("utf-8") if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with self._opener.open(req, timeout=timeout or self.timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as e:
            payload = e.read() if e.fp is not None else b""
            if e.code == 429 or e.code >= 500:
                raise _Transient(f"HTTP {e.code}: {_server_message(payload)}", _retry_after(e)) from None
            raise _Refused(e.code, _server_message(payload)) from None
        except urllib.error.URLError as e:
            raise _Transient(_one_line(getattr(e.reason, "strerror", None) or e.reason)) from None
        except (ConnectionError, http.client.HTTPException, TimeoutError) as e:
            raise _Transient(_one_line(f"{type(e).__name__}: {e}")) from None

    def _post_with_retries(self, body: dict) -> dict:
        last, wait = "", None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(wait if wait is not None else self.backoff * 2 ** (attempt - 1))
            try:
                raw = self._request("POST", "/v1/chat/completions", body)
            except _Transient as e:
                last, wait = str(e), e.wait
                log.warning("vllm-server: attempt %d/%d failed: %s", attempt + 1, self.retries + 1, last)
                continue
            try:
                return json.loads(raw)
            except ValueError as e:
                raise SamplerError(f"vLLM server at {self.url} answered with invalid JSON: {e}") from None
        raise TransientSamplerError(f"vLLM server at {self.url} failed {self.retries + 1} times: {last}")

    # -- the Sampler protocol --------------------------------------------------------------------------
    def request_body(self, sample: Sample, n: int, seed: int) -> dict[str, Any]:
        """The chat-completions request of one sample (images inline, its own seed)."""
        parts: list[dict[str, Any]] = []
        for i, rel in enumerate(sample.images):
            try:
                url = image_data_url(resolve_image_path(rel, self.base_dir))
            except ImageLoadError as e:
                raise ImageLoadError(f"sample {sample.sample_id!r}: field 'images[{i}]': {e}") from None
            parts.append({"type": "image_url", "image_url": {"url": url}})
        text = self.adapter.clean_prompt(user_text(sample)) if self.adapter else user_text(sample)
        parts.append({"type": "text", "text": text})
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": parts}]
        body: dict[str, Any] = {
            "model": self.model, "messages": messages, "n": n, "temperature": self.temperature,
            "top_p": self.top_p, "max_tokens": self.max_new_tokens, "seed": derive_seed(seed, sample.sample_id),
        }
        if self.adapter is not None:  # vLLM's extra parameter; absent, the server adds no special tokens
            body["add_special_tokens"] = self.adapter.needs_added_bos(
                self.adapter.render_prompt(text, len(sample.images), self.system))
        if self.stop:
            body["stop"] = self.stop
        return body

    def _one(self, sample: Sample, n: int, seed: int) -> list[str]:
        try:
            body = self.request_body(sample, n, seed)
        except ImageLoadError as e:
            self.errors[sample.sample_id] = str(e)
            return []
        try:
            data = self._post_with_retries(body)
        except _Refused as e:
            if e.status in PER_SAMPLE_STATUS:
                self.errors[sample.sample_id] = f"server refused the request: HTTP {e.status}: {e.message}"
                log.warning("vllm-server: sample %r: %s", sample.sample_id, self.errors[sample.sample_id])
                return []
            raise SamplerError(f"vLLM server at {self.url} refused the request: HTTP {e.status}: {e.message}") from None
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        return [stop_truncate((c.get("message") or {}).get("content") or "", self.stop).strip() for c in choices]

    def sample(self, samples: list[Sample], n: int, seed: int) -> list[list[str]]:
        if not samples:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(samples)), thread_name_prefix="vllm-client") as pool:
            futures = [pool.submit(self._one, s, n, seed) for s in samples]
            return [f.result() for f in futures]

    def provenance(self, sample_id: str, seed: int) -> dict[str, Any]:
        return self._provenance.for_sample(sample_id, seed)


class _Refused(Exception):
    """The server answered 4xx (not 429): retrying cannot help."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


__all__ = ["VLLMServerSampler", "image_data_url", "DEFAULT_URL"]
