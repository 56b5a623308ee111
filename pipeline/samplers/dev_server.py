"""A small OpenAI-compatible chat server over ``TransformersSampler`` (stdlib ``http.server`` only).

Why: the ``vllm-server`` client must be tested against a real HTTP server that runs a real model, on a
machine without vLLM. This server speaks the subset of the API the client uses (``GET /v1/models``,
``GET /health``, ``POST /v1/chat/completions`` with base64 image data URLs, ``n``, ``temperature``,
``top_p``, ``max_tokens``, ``stop``, ``seed``) and answers errors in OpenAI's JSON shape. It renders
the messages with the model's chat template, as vLLM does. One request runs at a time (a lock): it is a
development server, not a serving engine.

    python -m pipeline.samplers.dev_server MODEL_DIR --port 8000
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from models.prompts import PromptError

MAX_BODY_BYTES = 64 * 1024 * 1024


class RequestError(Exception):
    def __init__(self, status: int, message: str, kind: str = "BadRequestError"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def decode_data_url(url: str):
    """A PIL image from ``data:image/...;base64,...`` (remote URLs are refused: this server is offline)."""
    from PIL import Image, UnidentifiedImageError

    if not url.startswith("data:"):
        raise RequestError(400, "only base64 data URLs are accepted for images")
    header, _, payload = url.partition(",")
    if ";base64" not in header:
        raise RequestError(400, "image data URL must be base64-encoded")
    try:
        with Image.open(io.BytesIO(base64.b64decode(payload, validate=True))) as im:
            return im.convert("RGB")
    except (binascii.Error, ValueError, OSError, UnidentifiedImageError) as e:
        raise RequestError(400, f"image data URL is not a readable image: {e}") from None


class ChatBackend:
    """Turns a chat-completions request into a response dict with one ``TransformersSampler``."""

    def __init__(self, sampler, served_name: str):
        self.sampler = sampler
        self.served_name = served_name
        self.lock = threading.Lock()

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.served_name, "object": "model", "owned_by": "medpref"}]}

    def complete(self, req: dict[str, Any]) -> dict[str, Any]:
        if req.get("model") != self.served_name:
            raise RequestError(404, f"The model `{req.get('model')}` does not exist.", "NotFoundError")
        messages = req.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "'messages' must be a non-empty list")
        images = []
        for m in messages:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and part.get("type") == "image_url":
                        images.append(decode_data_url((part.get("image_url") or {}).get("url", "")))
        n = req.get("n", 1)
        max_tokens = req.get("max_tokens") or req.get("max_completion_tokens") or 256
        if not isinstance(n, int) or n < 1 or not isinstance(max_tokens, int) or max_tokens < 1:
            raise RequestError(400, "'n' and 'max_tokens' must be positive integers")
        stop = req.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        try:
            prompt = self.sampler.prompts.render_messages(messages)
        except PromptError as e:
            raise RequestError(400, str(e)) from None
        with self.lock:
            texts = self.sampler.generate(
                [prompt], [images], n, [int(req.get("seed") or 0)],
                temperature=float(req.get("temperature", 1.0)), top_p=float(req.get("top_p", 1.0)),
                max_new_tokens=max_tokens, stop=stop,
            )[0]
        tok = self.sampler.tokenizer
        completion_tokens = sum(len(tok(t, add_special_tokens=False).input_ids) for t in texts)
        prompt_tokens = len(tok(prompt, add_special_tokens=False).input_ids)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.served_name,
            "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                        for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }


class ChatHandler(BaseHTTPRequestHandler):
    backend: ChatBackend  # set on the subclass made by make_server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by default
        pass

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, kind: str) -> None:
        self._send(status, {"error": {"message": message, "type": kind, "code": status}})

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path in ("/health", "/v1/health"):
            self._send(200, {"status": "ok"})
        elif self.path == "/v1/models":
            self._send(200, self.backend.models())
        else:
            self._error(404, f"no route {self.path}", "NotFoundError")

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/v1/chat/completions":
            self._error(404, f"no route {self.path}", "NotFoundError")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                raise RequestError(413, f"request body over {MAX_BODY_BYTES} bytes")
            try:
                req = json.loads(self.rfile.read(length) or b"null")
            except ValueError as e:
                raise RequestError(400, f"body is not JSON: {e}") from None
            if not isinstance(req, dict):
                raise RequestError(400, "body must be a JSON object")
            self._send(200, self.backend.complete(req))
        except RequestError as e:
            self._error(e.status, e.message, e.kind)
        except Exception as e:  # noqa: BLE001 - a server error is a 500, never a dropped connection
            self._error(500, f"{type(e).__name__}: {' '.join(str(e).split())}", "InternalServerError")


def make_server(sampler, host: str = "127.0.0.1", port: int = 0, served_name: str | None = None,
                handler: type[ChatHandler] = ChatHandler) -> ThreadingHTTPServer:
    """A server (not yet serving) over ``sampler``; ``port=0`` picks a free port (``server.server_port``)."""
    backend = ChatBackend(sampler, served_name or sampler.model_dir)
    bound = type("BoundChatHandler", (handler,), {"backend": backend})
    server = ThreadingHTTPServer((host, port), bound)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    from pipeline.samplers.transformers_sampler import TransformersSampler

    ap = argparse.ArgumentParser(description="Serve a local model over an OpenAI-compatible chat API (development).")
    ap.add_argument("model", type=Path)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--served-model-name", default=None)
    args = ap.parse_args(argv)
    server = make_server(TransformersSampler(model=args.model), args.host, args.port, args.served_model_name)
    print(f"serving {args.model} at http://{args.host}:{server.server_port}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
