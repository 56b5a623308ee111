"""Samplers: the transformers backend on shared VQA-RAD chest images with the tiny model, prompt building
against each supported chat template, provenance, the missing-vLLM error, and the llm span editor."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from editors.llm import LLMSpanRewriter, check_proposal  # noqa: E402
from models.prompts import PromptBuilder, PromptError, user_text  # noqa: E402
from models.tiny_model import build_tiny_model, load_project_tokenizer  # noqa: E402
from pipeline.config import SamplerConfig  # noqa: E402
from pipeline.importers import import_samples  # noqa: E402
from pipeline.samplers import SamplerError, get_sampler  # noqa: E402
from pipeline.samplers.provenance import derive_seed, model_fingerprint, provenance_of  # noqa: E402
from schemas.sample import Sample, parse_sample  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
VQA_RAD = DATA / "vqa_rad" / "qa.jsonl"
TEMPLATES = Path(__file__).resolve().parent / "fixtures" / "chat_templates"
needs_vqa_rad = pytest.mark.skipif(not VQA_RAD.is_file(), reason=f"shared VQA-RAD not found at {VQA_RAD}")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="module")
def sampler(tiny_model):
    return get_sampler(SamplerConfig(name="transformers", model=str(tiny_model), max_new_tokens=12,
                                     temperature=0.9, top_p=0.9))


def chest_samples(manifest_dir: Path, count: int) -> list[Sample]:
    """VQA-RAD questions about chest images, one per distinct image (absolute image paths)."""
    seen, out = set(), []
    for rec in import_samples("vqa-rad", VQA_RAD, manifest_dir=manifest_dir):
        image = rec["images"][0] if rec["images"] else None
        if rec["meta"].get("image_png") and image not in seen:
            seen.add(image)
            out.append(parse_sample(rec))
            if len(out) == count:
                break
    return out


# -- the transformers sampler, end to end on shared images --------------------------------------------
@needs_vqa_rad
def test_transformers_sampler_gives_n_responses_per_shared_chest_sample(sampler, tmp_path):
    samples = chest_samples(tmp_path, 4)
    assert len(samples) == 4 and all(Path(s.images[0]).is_file() for s in samples)
    out = sampler.sample(samples, 3, seed=11)
    assert [len(r) for r in out] == [3, 3, 3, 3]
    assert all(isinstance(t, str) for r in out for t in r)
    assert sum(bool(t) for r in out for t in r) >= 10  # a random model may stop at once, rarely
    assert not sampler.errors
    # Per-sample seeds: the same sample gets the same responses alone, in another batch, in another order.
    alone = sampler.sample([samples[2]], 3, seed=11)
    reordered = sampler.sample([samples[3], samples[2]], 3, seed=11)
    assert alone[0] == out[2] == reordered[1]
    assert sampler.sample([samples[2]], 3, seed=12)[0] != out[2]
    assert len(set(out[0])) > 1  # n draws, not one draw repeated


@needs_vqa_rad
def test_image_conditions_the_response(sampler, tmp_path):
    """The pixels reach the model: one question, one seed, two different chest images, different answers."""
    a, b = chest_samples(tmp_path, 2)
    b_with_a_question = b.model_copy(update={"sample_id": a.sample_id, "prompt": a.prompt})
    assert sampler.sample([a], 1, 5)[0] != sampler.sample([b_with_a_question], 1, 5)[0]


@needs_vqa_rad
def test_unreadable_image_fails_only_its_sample(sampler, tmp_path):
    good = chest_samples(tmp_path, 1)[0]
    bad = good.model_copy(update={"sample_id": "broken", "images": [str(tmp_path / "missing.png")]})
    out = sampler.sample([bad, good], 2, seed=0)
    assert out[0] == [] and len(out[1]) == 2
    assert "broken" in sampler.errors and "images[0]" in sampler.errors["broken"]


def test_relative_image_paths_resolve_against_base_dir(tiny_model, tmp_path):
    from PIL import Image

    from pipeline.samplers.transformers_sampler import TransformersSampler

    Image.new("L", (64, 64), 128).save(tmp_path / "img.png")
    s = Sample(sample_id="rel", task="report", images=["img.png"], reference="Normal chest.")
    local = TransformersSampler(model=tiny_model, max_new_tokens=4, base_dir=tmp_path)
    assert len(local.sample([s], 2, 0)[0]) == 2 and not local.errors


def test_text_only_sample_and_stop_strings(sampler):
    s = Sample(sample_id="t1", task="report", prompt="", reference="No acute disease.")
    (responses,) = sampler.sample([s], 2, seed=3)
    assert len(responses) == 2
    assert user_text(s) in sampler.prompts.render(s)  # the task's default prompt
    # A stop string taken from the first response cuts that response just before it, and generation stops.
    first = responses[0]
    assert len(first.strip()) > 6
    stop = first.strip()[3:6]
    (cut,) = sampler.generate([sampler.prompts.render(s)], [[]], 1, [derive_seed(3, "t1")], stop=[stop])
    assert cut[0] == first[: first.index(stop)].strip()


def test_provenance_names_model_template_and_seeds(sampler, tiny_model, tmp_path):
    prov = provenance_of(sampler, "vqarad-1", 11)
    assert prov["sampler"] == "transformers" and prov["model"]["path"] == str(tiny_model.resolve())
    assert prov["sampling"] == {"temperature": 0.9, "top_p": 0.9, "max_new_tokens": 12, "stop": []}
    assert prov["seed"] == 11 and prov["sample_seed"] == derive_seed(11, "vqarad-1")
    assert prov["prompt_template_sha256"] == sampler.prompts.template_sha256
    json.dumps(prov)  # plain JSON for the pair's meta
    other = build_tiny_model(tmp_path / "other", seed=1)
    assert model_fingerprint(other)["config_sha256"] == prov["model"]["config_sha256"]
    assert model_fingerprint(other)["weights_sha256"] != prov["model"]["weights_sha256"]


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(0, "a") == derive_seed(0, "a")
    assert len({derive_seed(0, "a"), derive_seed(1, "a"), derive_seed(0, "b"), derive_seed(0, "a", 1)}) == 4
    assert all(0 <= derive_seed(s, "x") < 2**31 for s in range(50))


def test_missing_model_folder_is_one_line_error(tmp_path):
    with pytest.raises(SamplerError, match="not a model folder") as e:
        get_sampler(SamplerConfig(name="transformers", model=str(tmp_path)))
    assert "\n" not in str(e.value)


# -- prompt building against each supported chat template --------------------------------------------
def template_tokenizer(name: str):
    tok = load_project_tokenizer()
    tok.chat_template = (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")
    return tok


QUESTION = "Is there a left pleural effusion?"


@pytest.mark.parametrize("name", ["qwen2_vl", "qwen3_vl"])
def test_qwen_vl_templates(name):
    b = PromptBuilder(template_tokenizer(name), source=name, image_token="<|image_pad|>")
    one = b.render_text(QUESTION, 1)
    assert one.endswith(f"<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{QUESTION}<|im_end|>\n"
                        "<|im_start|>assistant\n")
    assert one.startswith("<|im_start|>system\nYou are a helpful assistant.") == (name == "qwen2_vl")
    assert b.render_text(QUESTION, 2).count("<|vision_start|><|image_pad|><|vision_end|>") == 2
    assert "<|image_pad|>" not in b.render_text(QUESTION, 0)


def test_llava_template():
    b = PromptBuilder(template_tokenizer("llava"), source="llava", image_token="<image>")
    assert b.render_text(QUESTION, 1) == f"USER: <image>\n{QUESTION} ASSISTANT:"
    assert b.render_text(QUESTION, 0) == f"USER: {QUESTION} ASSISTANT:"  # parts-only template, no images


def test_text_only_template_gets_string_content():
    b = PromptBuilder(template_tokenizer("chatml_text"), source="chatml", accepts_images=False)
    assert b.render_text(QUESTION, 0) == f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    with pytest.raises(PromptError, match="text-only"):
        b.render_text(QUESTION, 1)


def test_system_prompt_and_template_hash():
    plain = PromptBuilder(template_tokenizer("qwen3_vl"), image_token="<|image_pad|>")
    with_system = PromptBuilder(template_tokenizer("qwen3_vl"), image_token="<|image_pad|>", system="Be brief.")
    assert with_system.render_text(QUESTION, 1).startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert plain.template_sha256 != with_system.template_sha256
    assert plain.template_sha256 != PromptBuilder(template_tokenizer("qwen2_vl")).template_sha256


def test_template_that_drops_images_or_is_missing_fails_loudly():
    tok = template_tokenizer("chatml_text")
    tok.chat_template = "{% for m in messages %}{% for p in m['content'] %}{{ p['text'] }}{% endfor %}{% endfor %}"
    with pytest.raises(PromptError, match="0 '<image>' placeholder"):
        PromptBuilder(tok, source="dropper", image_token="<image>").render_text(QUESTION, 1)
    tok.chat_template = None
    with pytest.raises(PromptError, match="no chat template"):
        PromptBuilder(tok, source="bare")


def test_tiny_model_processor_expands_the_placeholder(tiny_model):
    """The model's own processor: one rendered placeholder becomes the 49 image tokens the model expects."""
    from PIL import Image

    b = PromptBuilder.from_pretrained(tiny_model)
    prompt = b.render_text(QUESTION, 1)
    assert prompt.count("<image>") == 1 and b.accepts_images
    enc = b.renderer(text=[prompt], images=[Image.new("RGB", (300, 260))], return_tensors="pt")
    assert int((enc["input_ids"] == b.tokenizer.image_token_id).sum()) == 49


# -- vLLM is optional ---------------------------------------------------------------------------------
def test_missing_vllm_is_a_one_line_install_hint(monkeypatch, tiny_model):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError, as on a CPU install
    with pytest.raises(SamplerError) as e:
        get_sampler(SamplerConfig(name="vllm", model=str(tiny_model)))
    msg = str(e.value)
    assert "pip install 'medpref[vllm]'" in msg and "\n" not in msg


def test_cpu_import_paths_do_not_import_vllm():
    import subprocess

    code = ("import sys; import pipeline.samplers, pipeline.samplers.vllm_engine, pipeline.samplers.vllm_server;"
            "print('vllm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"


# -- the llm span editor ------------------------------------------------------------------------------
REPORT = "Heart size is normal. There is a small right pleural effusion. No pneumothorax."
SPAN = (REPORT.index("small right"), REPORT.index("small right") + len("small right pleural effusion"))


def test_check_proposal_accepts_only_span_local_rewrites():
    fixed = REPORT[:SPAN[0]] + "no pleural effusion" + REPORT[SPAN[1]:]
    ok = check_proposal(REPORT, SPAN, fixed)
    assert ok.text == fixed and ok.span_text == "no pleural effusion"
    assert check_proposal(REPORT, SPAN, "\n" + fixed + "  ").text == fixed  # whitespace at the ends only
    marked = REPORT[:SPAN[0]] + "[[no pleural effusion]]" + REPORT[SPAN[1]:]
    assert check_proposal(REPORT, SPAN, marked).text == fixed
    drift = fixed.replace("Heart size", "Heart Size")
    assert check_proposal(REPORT, SPAN, drift).reason.startswith("outside_span_changed: text before the span")
    assert check_proposal(REPORT, SPAN, fixed.rstrip(".")).reason.startswith("outside_span_changed")
    assert check_proposal(REPORT, SPAN, REPORT).reason.startswith("unchanged")
    assert check_proposal(REPORT, SPAN, "  ").reason.startswith("no_output")


def test_llm_rewriter_through_a_real_sampler(sampler):
    rewriter = LLMSpanRewriter(sampler, n=2, seed=0)
    prompt = rewriter.prompt(REPORT, SPAN, "No pleural effusion.", "false_finding")
    assert "[[small right pleural effusion]]" in prompt and "false finding" in prompt
    result = rewriter.propose(REPORT, SPAN, "No pleural effusion.", "false_finding")
    # A random-weight model cannot copy the report: its proposal must be refused, with a reason.
    assert result is None and rewriter.last_reason.split(":")[0] in {"outside_span_changed", "no_output"}
    assert rewriter.propose(REPORT, (5, 500), "x", "false_finding") is None
    assert rewriter.last_reason.startswith("invalid_span")
