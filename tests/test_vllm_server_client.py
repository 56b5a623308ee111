"""The vllm-server client against a real OpenAI-compatible server on loopback that runs the tiny model
(``pipeline.samplers.dev_server`` over the transformers sampler): responses, concurrency bound, retries
on transient errors only, and the one-line error when the server is down."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from data_paths import SHARED as DATA  # noqa: E402 - the full shared data, else the committed excerpts

from models.tiny_model import build_tiny_model  # noqa: E402
from pipeline.config import SamplerConfig  # noqa: E402
from pipeline.importers import import_samples  # noqa: E402
from pipeline.samplers import SamplerError, TransientSamplerError, get_sampler  # noqa: E402
from pipeline.samplers.dev_server import ChatHandler, make_server  # noqa: E402
from pipeline.samplers.transformers_sampler import TransformersSampler  # noqa: E402
from pipeline.samplers.vllm_server import VLLMServerSampler  # noqa: E402
from schemas.sample import Sample, parse_sample  # noqa: E402

VQA_RAD = DATA / "vqa_rad" / "qa.jsonl"
pytestmark = pytest.mark.skipif(not VQA_RAD.is_file(), reason=f"shared VQA-RAD not found at {VQA_RAD}")
SERVED = "tiny-policy"


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> TransformersSampler:
    model = build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)
    return TransformersSampler(model=model, max_new_tokens=8, temperature=0.9, top_p=0.9)


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> list[Sample]:
    seen, out = set(), []
    for rec in import_samples("vqa-rad", VQA_RAD, manifest_dir=tmp_path_factory.mktemp("manifest")):
        if rec["meta"].get("image_png") and rec["images"][0] not in seen:
            seen.add(rec["images"][0])
            out.append(parse_sample(rec))
        if len(out) == 5:
            return out
    return out


@contextmanager
def serving(sampler: TransformersSampler, handler: type[ChatHandler] = ChatHandler) -> Iterator[str]:
    server = make_server(sampler, "127.0.0.1", 0, served_name=SERVED, handler=handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()


def client(url: str, **kw) -> VLLMServerSampler:
    kw.setdefault("backoff", 0.0)
    return VLLMServerSampler(server_url=url, max_new_tokens=8, temperature=0.9, top_p=0.9, **kw)


def test_server_responses_equal_local_sampling(local, samples):
    """Over HTTP (images as base64 data URLs, the server's own chat-template rendering, the request's seed)
    the client gets exactly what the transformers sampler gives in-process."""
    with serving(local) as url:
        remote = get_sampler(SamplerConfig(name="vllm-server", server_url=url, max_new_tokens=8,
                                           temperature=0.9, top_p=0.9, concurrency=3))
        assert remote.model == SERVED  # the only served model, when none is named
        got = remote.sample(samples, 2, seed=4)
    assert [len(r) for r in got] == [2] * len(samples)
    assert got == local.sample(samples, 2, seed=4)
    assert remote.provenance(samples[0].sample_id, 4)["model"] == {"name": SERVED, "server": url.removesuffix("/v1")}


def test_concurrency_is_bounded(local, samples):
    state = {"now": 0, "max": 0}
    lock = threading.Lock()

    class Counting(ChatHandler):
        def do_POST(self):  # noqa: N802
            with lock:
                state["now"] += 1
                state["max"] = max(state["max"], state["now"])
            time.sleep(0.05)
            try:
                super().do_POST()
            finally:
                with lock:
                    state["now"] -= 1

    with serving(local, Counting) as url:
        got = client(url, concurrency=2).sample(samples, 1, seed=0)
    assert all(len(r) == 1 for r in got)
    assert state["max"] == 2  # several in flight, never more than the bound


def flaky_handler(statuses: list[int | str]):
    """Answers the first POSTs with the given statuses ("reset": drop the connection), then serves."""
    calls = {"n": 0}

    class Flaky(ChatHandler):
        def do_POST(self):  # noqa: N802
            calls["n"] += 1
            if calls["n"] <= len(statuses):
                status = statuses[calls["n"] - 1]
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if status == "reset":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self._error(int(status), f"injected {status}", "Injected")
                return
            super().do_POST()

    return Flaky, calls


@pytest.mark.parametrize("statuses", [[503, 429], ["reset"], [500, 502, 504]])
def test_transient_errors_are_retried(local, samples, statuses):
    handler, calls = flaky_handler(statuses)
    with serving(local, handler) as url:
        got = client(url, concurrency=1, retries=3).sample(samples[:1], 2, seed=1)
    assert len(got[0]) == 2 and calls["n"] == len(statuses) + 1
    assert got == local.sample(samples[:1], 2, seed=1)


def test_retries_run_out_as_a_transient_error(local, samples):
    handler, calls = flaky_handler([503] * 10)
    with serving(local, handler) as url, pytest.raises(TransientSamplerError, match="failed 3 times: HTTP 503") as e:
        client(url, concurrency=1, retries=2).sample(samples[:1], 1, seed=1)
    assert calls["n"] == 3 and "\n" not in str(e.value)


def test_client_errors_are_not_retried(local, samples):
    handler, calls = flaky_handler([401])
    with serving(local, handler) as url, pytest.raises(SamplerError, match="HTTP 401: injected 401") as e:
        client(url, concurrency=1, retries=3).sample(samples[:1], 1, seed=1)
    assert calls["n"] == 1 and not isinstance(e.value, TransientSamplerError)


def test_a_refused_request_fails_only_its_sample(local, samples):
    handler, calls = flaky_handler([400])
    with serving(local, handler) as url:
        c = client(url, concurrency=1, retries=3)
        got = c.sample(samples[:2], 1, seed=1)
    assert got[0] == [] and len(got[1]) == 1 and calls["n"] == 2
    assert "HTTP 400" in c.errors[samples[0].sample_id]


def test_unknown_model_lists_served_models(local):
    with serving(local) as url, pytest.raises(SamplerError, match=f"model 'other' is not served; served models: {SERVED}"):
        client(url, model="other")


def test_server_down_is_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(SamplerError) as e:
        get_sampler(SamplerConfig(name="vllm-server", server_url=f"http://127.0.0.1:{port}/v1"))
    msg = str(e.value)
    assert f"http://127.0.0.1:{port}" in msg and "not reachable" in msg and "\n" not in msg
    assert "refused" in msg.lower()


def test_unreadable_image_fails_only_its_sample(local, samples, tmp_path):
    bad = samples[0].model_copy(update={"sample_id": "broken", "images": [str(tmp_path / "nope.png")]})
    with serving(local) as url:
        c = client(url)
        got = c.sample([bad, samples[1]], 1, seed=0)
    assert got[0] == [] and len(got[1]) == 1 and "images[0]" in c.errors["broken"]


def test_retry_after_is_honoured(local, samples):
    calls = {"n": 0}

    class Busy(ChatHandler):
        def do_POST(self):  # noqa: N802
            calls["n"] += 1
            if calls["n"] == 1:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = b'{"error": {"message": "busy"}}'
                self.send_response(429)
                self.send_header("Retry-After", "0.3")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_POST()

    with serving(local, Busy) as url:
        start = time.perf_counter()
        got = client(url, concurrency=1, retries=2).sample(samples[:1], 1, seed=2)
        waited = time.perf_counter() - start
    assert len(got[0]) == 1 and calls["n"] == 2 and waited >= 0.3
