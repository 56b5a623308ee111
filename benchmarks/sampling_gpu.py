"""Sampling throughput on one GPU: vLLM (``vllm.LLM``) against transformers ``generate``.

Both backends get the same prompts (rendered by the model's own chat template), the same chest images,
the same ``n``, temperature, top-p and token budget, through medpref's own samplers
(``VLLMSampler`` and ``TransformersSampler``). The model has Qwen2-VL-2B's architecture and size (2.2 B
parameters, its 151,936-token vocabulary, its vision tower and processor) with random weights built from
a config dict, so nothing is downloaded; a random model rarely emits end-of-sequence, so both backends
generate close to the full budget and the token rates compare like for like. Printed: generated tokens,
seconds and tokens/s of each backend (model load and engine start excluded, one warm-up each), and the
ratio vLLM / transformers.

    python benchmarks/sampling_gpu.py [--samples 32] [-n 4] [--max-new-tokens 128]

Needs a CUDA GPU, torchvision (Qwen2-VL's processor) and, for the vLLM half, ``pip install 'medpref[vllm]'``
(without vLLM the transformers half still runs and the ratio is reported as unavailable). Images: the
shared VQA-RAD chest images when ``../shared/data`` is there, else the two chest X-rays shipped in
``medpref_data/sample``, cycled. ``--arch tiny-llava`` runs the same code on the CPU with the tiny model.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")

SHARED_QA = ROOT.parent / "shared" / "data" / "vqa_rad" / "qa.jsonl"
SAMPLE_IMAGES = ROOT / "medpref_data" / "sample" / "images"
QUESTIONS = [
    "Describe the findings in this chest X-ray.",
    "Is there a pleural effusion?",
    "Is the heart size normal?",
    "Is there a pneumothorax?",
    "Where is the abnormality located?",
    "Are the lungs clear?",
]

# Qwen2-VL-2B-Instruct's config.json (architecture and sizes), as a dict: the random model is built from it.
QWEN2_VL_2B = {
    "architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl",
    "hidden_size": 1536, "intermediate_size": 8960, "num_attention_heads": 12, "num_hidden_layers": 28,
    "num_key_value_heads": 2, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "sliding_window": 32768, "max_window_layers": 28, "use_sliding_window": False, "tie_word_embeddings": True,
    "vocab_size": 151936, "hidden_act": "silu", "torch_dtype": "bfloat16",
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "bos_token_id": 151643, "eos_token_id": 151645, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
    "vision_token_id": 151654, "image_token_id": 151655, "video_token_id": 151656,
    "vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "in_chans": 3,
                      "hidden_size": 1536, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
}
QWEN_SPECIAL = {151643: "<|endoftext|>", 151644: "<|im_start|>", 151645: "<|im_end|>", 151652: "<|vision_start|>",
                151653: "<|vision_end|>", 151654: "<|vision_pad|>", 151655: "<|image_pad|>", 151656: "<|video_pad|>"}
# Equivalent to Qwen2-VL-Instruct's template for what sampling uses (system prompt, images, generation prompt).
QWEN2_VL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'image' or 'image' in part %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}{% elif 'text' in part %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
MAX_PIXELS = 512 * 28 * 28  # at most 512 visual tokens per image (Qwen2-VL's processor setting), same for both


@dataclass
class BenchSample:
    """What the samplers read from a sample (no pydantic needed on a bare GPU image)."""

    sample_id: str
    prompt: str
    images: list[str]
    task: str = "vqa"
    reference: str = "-"
    meta: dict = field(default_factory=dict)


def load_samples(count: int) -> list[BenchSample]:
    out: list[BenchSample] = []
    if SHARED_QA.is_file():
        seen = set()
        for line in SHARED_QA.open(encoding="utf-8"):
            row = json.loads(line)
            png = row.get("image_png")
            if png and png not in seen:
                seen.add(png)
                out.append(BenchSample(f"vqarad-{row['qid']}", row["question"], [str(SHARED_QA.parent / png)]))
                if len(out) == count:
                    return out
    images = sorted(SAMPLE_IMAGES.glob("*.png"))
    while len(out) < count:
        i = len(out)
        out.append(BenchSample(f"bench-{i}", QUESTIONS[i % len(QUESTIONS)], [str(images[i % len(images)])]))
    return out


def qwen_tokenizer(out_dir: Path):
    """The project's byte-level BPE widened to Qwen2's 151,936 ids, with Qwen2-VL's special tokens at their ids."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = json.loads((ROOT / "medpref_data" / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    taken = set(vocab.values()) | {t["id"] for t in spec["added_tokens"]}
    for i in range(QWEN2_VL_2B["vocab_size"]):
        if i not in taken and i not in QWEN_SPECIAL:
            vocab[f"<|filler_{i}|>"] = i  # unreachable by merges: only widens the id space
    for i, content in QWEN_SPECIAL.items():
        vocab[content] = i  # in the model's vocab too, so the added token keeps this id
        spec["added_tokens"].append({"id": i, "content": content, "single_word": False, "lstrip": False,
                                     "rstrip": False, "normalized": False, "special": True})
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
                                  bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = QWEN2_VL_TEMPLATE
    tok.save_pretrained(out_dir)
    return tok


def build_qwen2_vl_2b(out_dir: Path) -> Path:
    """Random-weight Qwen2-VL-2B (bf16, initialised on the GPU), its tokenizer and processor, saved to ``out_dir``."""
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tok = qwen_tokenizer(out_dir)
    config = Qwen2VLConfig.from_dict(QWEN2_VL_2B)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2VLForConditionalGeneration(config).to(torch.bfloat16).eval()
    model.generation_config.eos_token_id = [151645, 151643]
    model.generation_config.pad_token_id = 151643
    model.save_pretrained(out_dir)
    del model
    gc.collect()
    torch.cuda.empty_cache()
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(max_pixels=MAX_PIXELS),
                                 tokenizer=tok, video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN2_VL_TEMPLATE)
    processor.save_pretrained(out_dir)
    return out_dir


def timed(sampler, samples, n: int, seed: int) -> tuple[int, float, list[list[str]]]:
    sampler.sample(samples[:2], n, seed + 1)  # warm-up (kernels, graphs, allocator)
    before = sampler.tokens_generated
    t0 = time.perf_counter()
    out = sampler.sample(samples, n, seed)
    return sampler.tokens_generated - before, time.perf_counter() - t0, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("-n", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--arch", choices=["qwen2-vl-2b", "tiny-llava"], default="qwen2-vl-2b")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    ap.add_argument("--skip-vllm", action="store_true")
    args = ap.parse_args()

    import torch

    from pipeline.samplers.transformers_sampler import TransformersSampler

    samples = load_samples(args.samples)
    settings = {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": args.max_new_tokens}
    rows = args.samples * args.n
    results: dict[str, tuple[int, float]] = {}
    with tempfile.TemporaryDirectory(prefix="medpref-bench-") as tmp:
        t0 = time.perf_counter()
        if args.arch == "qwen2-vl-2b":
            if not torch.cuda.is_available():
                print("needs a CUDA GPU (use --arch tiny-llava on a CPU)", file=sys.stderr)
                return 2
            model_dir = build_qwen2_vl_2b(Path(tmp) / "qwen2-vl-2b-random")
        else:
            from models.tiny_model import build_tiny_model

            model_dir = build_tiny_model(Path(tmp) / "tiny-llava")
        print(f"model: {args.arch} random weights at {model_dir} (built in {time.perf_counter() - t0:.1f} s); "
              f"{len(samples)} samples x n={args.n} = {rows} sequences, <= {args.max_new_tokens} new tokens each; "
              f"images from {Path(samples[0].images[0]).parent}")
        if torch.cuda.is_available():
            print(f"device: {torch.cuda.get_device_name(0)}")

        hf = TransformersSampler(model=model_dir, max_batch_rows=rows, **settings)
        tokens, seconds, _ = timed(hf, samples, args.n, seed=0)
        results["transformers"] = (tokens, seconds)
        print(f"transformers generate: {tokens} tokens in {seconds:.2f} s = {tokens / seconds:.0f} tokens/s "
              f"(one batch of {rows} rows, {hf.model.dtype})")
        del hf
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

        if not args.skip_vllm:
            from pipeline.samplers.base import SamplerError
            from pipeline.samplers.vllm_engine import VLLMSampler

            try:
                t1 = time.perf_counter()
                engine = VLLMSampler(model=model_dir, engine_args={
                    "gpu_memory_utilization": args.gpu_memory_utilization, "max_model_len": 4096, "seed": 0},
                    **settings)
                print(f"vLLM engine start: {time.perf_counter() - t1:.1f} s")
            except SamplerError as e:
                print(f"vLLM: {e}")
            else:
                try:
                    tokens, seconds, _ = timed(engine, samples, args.n, seed=0)
                finally:
                    engine.close()
                results["vllm"] = (tokens, seconds)
                print(f"vLLM: {tokens} tokens in {seconds:.2f} s = {tokens / seconds:.0f} tokens/s")

    rates = {k: t / s for k, (t, s) in results.items()}
    if "vllm" in rates:
        print(f"ratio vLLM / transformers: {rates['vllm'] / rates['transformers']:.1f}x")
    else:
        print("ratio vLLM / transformers: unavailable (vLLM did not run)")
    print(json.dumps({"arch": args.arch, "samples": args.samples, "n": args.n, "max_new_tokens": args.max_new_tokens,
                      "tokens_per_s": {k: round(v, 1) for k, v in rates.items()}}))
    return 0


if __name__ == "__main__":  # vLLM's engine starts worker processes that re-import this module
    sys.exit(main())
