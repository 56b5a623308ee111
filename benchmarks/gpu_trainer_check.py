"""The one short check for a lent GPU: step time and peak memory of fire-mpo and of TRL's DPOTrainer on
the same batch, for a random-weight model the size of Qwen3-VL-4B, bf16, LoRA on the language model.

Why random weights: nothing is downloaded; step time and memory depend on the shapes, not the values.
The config follows Qwen3-VL-4B-Instruct's published shapes (text: hidden 2560, 36 layers, 32 heads / 8 KV
heads of 128, MLP 9728, vocabulary 151,936; vision: 24 blocks of 1024, patch 16, deepstack 5/11/17). The
tokenizer is the project's with Qwen's special tokens (token ids < 4,100, valid in the big vocabulary).
Pairs: the real IU X-ray text pairs of trainer/devdata.py (and VQA-RAD image pairs for the visual term).

Run (not run on the CPU machine): python benchmarks/gpu_trainer_check.py [--batch-size 4] [--steps 6]
Prints one line per measurement: `name  ms/step  peak GiB`.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

QWEN3_VL_4B_TEXT = dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                        num_key_value_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=32768,
                        rope_parameters={"rope_type": "default", "rope_theta": 5000000.0,
                                         "mrope_section": [24, 20, 20], "mrope_interleaved": True})
QWEN3_VL_4B_VISION = dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, patch_size=16,
                          spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=2560,
                          num_position_embeddings=2304, deepstack_visual_indexes=[5, 11, 17])


def model_folder(work: Path) -> Path:
    """Config (4B shapes), tokenizer and image processor; no weights (the model is built on the GPU)."""
    import transformers as tf

    from models.tiny import _qwen_ids, _qwen_image_processor, _qwen_tokenizer

    tok = _qwen_tokenizer("qwen3_vl")
    text = dict(QWEN3_VL_4B_TEXT, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                bos_token_id=tok.bos_token_id)
    config = tf.Qwen3VLConfig(text_config=text, vision_config=QWEN3_VL_4B_VISION, **_qwen_ids(tok))
    config.save_pretrained(work)
    tok.save_pretrained(work)
    _qwen_image_processor(16).save_pretrained(work)
    return work


def timed(fn, steps: int) -> tuple[float, float]:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:] or times) * 1000, torch.cuda.max_memory_allocated() / 2**30


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=6)
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_trainer_check: no CUDA device")
    import transformers as tf

    from models import get_adapter
    from models.tiny_model import load_project_tokenizer
    from trainer.data import PairEncoder, PairShards, collate_pairs
    from trainer.devdata import iu_text_pairs, vqa_image_pairs, write_shard
    from trainer.loop import preference_step
    from trainer.model import Reference, add_lora, disable_dropout, language_linear_names
    from trainer.presets import get_preset

    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    folder = model_folder(work / "qwen3-vl-4b-random")
    adapter = get_adapter(folder)
    device = torch.device("cuda")
    with device:
        model = tf.Qwen3VLForConditionalGeneration._from_config(tf.AutoConfig.from_pretrained(folder),
                                                                 dtype=torch.bfloat16)
    disable_dropout(model)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    policy = add_lora(model, r=128, alpha=256, dropout=0.05, rslora=True)
    reference = Reference(policy)
    policy.train()
    tok = load_project_tokenizer()
    batches = {}
    for name, rows in (("text", iu_text_pairs(tok, limit=args.batch_size)),
                       ("image", vqa_image_pairs(tok, limit=args.batch_size))):
        shards = PairShards(write_shard(rows, work / name))
        encoder = PairEncoder(adapter)
        batches[name] = collate_pairs([encoder(shards[i]) for i in range(len(shards))], adapter).to(device)
    optimizer = torch.optim.AdamW([q for q in policy.parameters() if q.requires_grad], lr=1e-6)
    print(f"Qwen3-VL-4B-size random weights, bf16, rsLoRA r128 on the language model, gradient checkpointing, "
          f"batch {args.batch_size} pairs, {torch.cuda.get_device_name()}, torch {torch.__version__}")

    for preset_name, batch_name in (("fire-mpo", "text"), ("dpo", "text"), ("fire-mpo", "image")):
        preset = get_preset(preset_name)

        def step(preset=preset, batch=batches[batch_name]):
            losses, _ = preference_step(policy, reference, batch, preset)
            losses.mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        ms, gib = timed(step, args.steps)
        print(f"train-pairs {preset_name:9s} {batch_name:5s} pairs  {ms:8.1f} ms/step  {gib:6.2f} GiB peak")

    try:
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer
    except ImportError as e:
        print(f"TRL DPOTrainer: not installed ({e})")
        return
    rows = [PairShards(work / "text")[i] for i in range(args.batch_size)]
    eos = adapter.tokenizer.eos_token
    data = Dataset.from_list([{"prompt": adapter.render_prompt(r["prompt"], 0), "chosen": r["chosen"] + eos,
                               "rejected": r["rejected"] + eos} for r in rows] * (args.steps + 1))
    ends: list[float] = []

    class Clock(tf.TrainerCallback):
        def on_step_begin(self, *a, **k):
            torch.cuda.synchronize()
            ends.append(time.perf_counter())

    from peft import LoraConfig

    base = policy.unload()  # the same random base weights, without our adapters
    config = DPOConfig(output_dir=str(work / "trl"), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                       learning_rate=1e-6, bf16=True, gradient_checkpointing=True, report_to="none",
                       save_strategy="no", logging_steps=1, disable_tqdm=True, max_length=None)
    lora = LoraConfig(r=128, lora_alpha=256, lora_dropout=0.05, use_rslora=True,
                      target_modules=language_linear_names(base))
    trainer = DPOTrainer(model=base, args=config, train_dataset=data, processing_class=adapter.tokenizer,
                         peft_config=lora, callbacks=[Clock()])
    torch.cuda.reset_peak_memory_stats()
    trainer.train()
    torch.cuda.synchronize()
    ends.append(time.perf_counter())
    gaps = [b - a for a, b in zip(ends, ends[1:], strict=False)][2:]
    print(f"TRL DPOTrainer dpo       text  pairs  {statistics.median(gaps) * 1000:8.1f} ms/step  "
          f"{torch.cuda.max_memory_allocated() / 2**30:6.2f} GiB peak")


if __name__ == "__main__":
    main()
