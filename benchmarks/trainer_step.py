"""Step time of `train-pairs` against TRL's DPOTrainer, same tiny model, same batch, on the CPU.

What is measured: the wall time of one optimisation step (batch encoding and collation, policy and
reference forwards, backward, AdamW, metrics), as the gap between consecutive steps, median over the
steps after a warm-up. Both trainers see exactly the same B pairs every step (a shard folder holding only
those pairs; TRL gets them with the chat-formatted prompt and EOS appended, so the token sequences are
identical), fp32, no gradient checkpointing, per-step metrics in both. Runs alternate between the two
trainers to spread the noise of a shared machine evenly.

Reported first: peak memory and step time of chunked vs full logits for a tiny Qwen2-VL with vocabularies
up to 150k tokens (each in a fresh process). Then: `dpo` preset vs TRL (target ratio <= 0.8; TRL with its
defaults, which run the reference every step; our dpo computes reference log-probs once per pair), `fire-mpo` on the same text pairs, and `fire-mpo` on
image pairs with corrupted images (the visual term's extra forwards). Pairs: IU X-ray generations through
`build-pairs run` when it works, else trainer/devdata.py; image pairs: NIH reports through
`build-pairs run`, else VQA-RAD via trainer/devdata.py.

Run: .venv/bin/python benchmarks/trainer_step.py [--batch-size 8] [--steps 30] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import os

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DO_NOT_TRACK"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from models import get_adapter  # noqa: E402
from models.tiny_model import build_tiny_model, load_project_tokenizer  # noqa: E402
from trainer.data import shard_files  # noqa: E402
from trainer.devdata import SHARED_DATA, iu_text_pairs, vqa_image_pairs, write_shard  # noqa: E402
from trainer.loop import TrainConfig, train  # noqa: E402


def pipeline_pairs(fmt: str, source: Path, work: Path) -> Path | None:
    """Shards from the project's own `build-pairs import` + `run`, or None if it cannot run."""
    exe = Path(sys.executable).parent / "build-pairs"
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect")}
    for cmd in ([str(exe), "import", fmt, str(source), "--out", str(work / f"{fmt}.jsonl")],
                [str(exe), "run", "--samples", str(work / f"{fmt}.jsonl"), "--out", str(work / fmt)]):
        if subprocess.run(cmd, capture_output=True, env=env, cwd=ROOT).returncode != 0:
            return None
    return work / fmt if list((work / fmt).glob("shard-*.parquet")) else None


def first_pairs(shards: Path, n: int, out: Path) -> Path:
    """A shard folder holding only the first n pairs (so every step sees exactly that batch)."""
    table = pq.read_table(shard_files(shards)[0]).slice(0, n)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / "shard-00000.parquet", compression="zstd")
    return out


def ours(shards: Path, model: Path, preset: str, args, out: Path, cache_ref: bool | None = None) -> list[float]:
    train(TrainConfig(shards=shards, out=out, model=model, steps=args.steps, preset=preset, lr=1e-4,
                      batch_size=args.batch_size, progress=False, cache_ref=cache_ref))
    times = [json.loads(line)["step_time"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    return times[args.warmup:]


def trl(shards: Path, model: Path, args, out: Path) -> list[float]:
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    processor = AutoProcessor.from_pretrained(model)
    adapter = get_adapter(model, processor)
    eos = processor.tokenizer.eos_token
    rows = pq.read_table(shard_files(shards)[0]).to_pylist()
    dataset = Dataset.from_list([{"prompt": adapter.render_prompt(r["prompt"], 0), "chosen": r["chosen"] + eos,
                                  "rejected": r["rejected"] + eos, "images": []} for r in rows])
    ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            ends.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            ends.append(time.perf_counter())

    config = DPOConfig(output_dir=str(out), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                       learning_rate=1e-4, lr_scheduler_type="cosine", beta=0.1, max_length=None,
                       gradient_checkpointing=False, use_cpu=True, report_to="none", save_strategy="no",
                       logging_steps=1, disable_tqdm=True, dataloader_num_workers=0)
    trainer = DPOTrainer(model=AutoModelForImageTextToText.from_pretrained(model), args=config,
                         train_dataset=dataset, processing_class=processor, callbacks=[StepClock()])
    trainer.train()
    gaps = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    return gaps[args.warmup:]


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def full_logps(model, batch):
    """The design the trainer replaced, for comparison: logits of every column, [2B, L, V] in fp32."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False,
                   **batch.image_inputs).logits.float()
    logps = torch.log_softmax(logits, dim=-1)
    index = (batch.label_pos - 1).unsqueeze(-1).expand(-1, -1, logps.shape[-1])
    picked = torch.gather(logps, 1, index).gather(-1, batch.labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked * batch.response_mask


def memory_probe(mode: str, vocab: int, batch_size: int, steps: int, args_chunk: int) -> dict:
    """One dpo step loop of a tiny Qwen2-VL with `vocab` tokens; peak RSS above the state before the loop
    (weights, reference copy and optimiser state already allocated), and the median step time."""
    from models.tiny import build_qwen2_vl
    from trainer.data import PairEncoder, collate_pairs
    from trainer.loop import preference_step
    from trainer.losses import preference_loss
    from trainer.model import Reference, disable_dropout
    from trainer.presets import get_preset

    work = Path(tempfile.mkdtemp(prefix="vocab-probe-"))
    adapter = get_adapter(build_qwen2_vl(work / "qwen2_vl", vocab_size=vocab))
    model = adapter.load_model(torch.float32)
    disable_dropout(model)
    reference = Reference(model)
    model.train()
    rows = iu_text_pairs(load_project_tokenizer(), limit=batch_size)
    shards = write_shard(rows, work / "shards")
    from trainer.data import PairShards

    table = PairShards(shards)
    batch = collate_pairs([PairEncoder(adapter)(table[i]) for i in range(len(table))], adapter)
    preset = get_preset("dpo")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for param in model.parameters():  # allocate the optimiser state before measuring
        param.grad = torch.zeros_like(param)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    before = _rss_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        if mode == "chunked":
            losses, _ = preference_step(model, reference, batch, preset, chunk=args_chunk)
        else:
            n = batch.num_pairs
            pol = full_logps(model, batch)
            with reference.active() as ref:
                ref_logps = full_logps(ref, batch)
            losses, _ = preference_loss(pol[:n], pol[n:], ref_logps[:n], ref_logps[n:], batch.response_mask[:n],
                                        batch.response_mask[n:], **preset.loss_kwargs())
        losses.mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    tokens = int(batch.response_mask.sum())
    return {"mode": mode, "vocab": vocab, "peak_mb": _rss_mb("VmHWM") - before,
            "step_ms": statistics.median(times[1:] or times) * 1000, "rows": int(batch.input_ids.shape[0]),
            "seq": int(batch.input_ids.shape[1]), "response_tokens": tokens}


def vocab_sweep(args) -> None:
    print(f"chunked (chunk {args.chunk} tokens) vs full logits, tiny Qwen2-VL (hidden 64), dpo, batch "
          f"{args.batch_size} IU pairs, {args.threads} thread(s); peak = RSS above weights + reference + "
          f"optimiser state")
    print(f"{'vocab':>8} {'mode':>8} {'peak MB':>9} {'ms/step':>9}")
    for vocab in args.vocab:
        for mode in ("full", "chunked"):
            cmd = [sys.executable, __file__, "--probe", mode, str(vocab), "--batch-size", str(args.batch_size),
                   "--threads", str(args.threads), "--probe-steps", str(args.probe_steps),
                   "--chunk", str(args.chunk)]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                print(f"{vocab:>8} {mode:>8}  failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{vocab:>8} {mode:>8} {r['peak_mb']:9.1f} {r['step_ms']:9.1f}   "
                  f"({r['rows']} rows x {r['seq']} columns, {r['response_tokens']} response tokens)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--vocab", type=int, nargs="+", default=[32000, 64000, 150000],
                   help="vocabulary sizes of the chunked-vs-full sweep")
    p.add_argument("--probe-steps", type=int, default=4)
    p.add_argument("--chunk", type=int, default=128, help="response tokens per output-head chunk (sweep)")
    p.add_argument("--only", choices=["trl", "vocab"], default=None, help="run one section only")
    p.add_argument("--probe", nargs=2, metavar=("MODE", "VOCAB"), help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.probe:
        print(json.dumps(memory_probe(args.probe[0], int(args.probe[1]), args.batch_size, args.probe_steps,
                                      args.chunk)))
        return
    if args.only != "trl":
        vocab_sweep(args)
    if args.only == "vocab":
        return
    import transformers

    try:
        import trl as trl_pkg

        trl_version = trl_pkg.__version__
    except ImportError:
        trl_version = None
    work = Path(tempfile.mkdtemp(prefix="trainer-bench-"))
    model = build_tiny_model(work / "tiny")
    tokenizer = load_project_tokenizer()
    text_src = pipeline_pairs("iu-generations", SHARED_DATA / "iu_xray_model_generations", work)
    text_from = "build-pairs run (IU generations)" if text_src else "trainer/devdata.py (IU generations)"
    text_src = text_src or write_shard(iu_text_pairs(tokenizer), work / "iu-dev")
    image_src = pipeline_pairs("nih-reports", SHARED_DATA / "nih_cxr14_rexrank_model_reports", work)
    image_from = "build-pairs run (NIH reports + images)" if image_src else "trainer/devdata.py (VQA-RAD)"
    image_src = image_src or write_shard(vqa_image_pairs(tokenizer, limit=args.batch_size), work / "vqa-dev")
    text = first_pairs(text_src, args.batch_size, work / "text-batch")
    images = first_pairs(image_src, args.batch_size, work / "image-batch")

    runs: dict[str, list[float]] = {"dpo": [], "dpo-no-cache": [], "trl": [], "fire-mpo": [], "fire-mpo-images": []}
    for r in range(args.rounds):
        runs["dpo"] += ours(text, model, "dpo", args, work / f"dpo-{r}")
        runs["dpo-no-cache"] += ours(text, model, "dpo", args, work / f"dpo-nc-{r}", cache_ref=False)
        if trl_version:
            runs["trl"] += trl(text, model, args, work / f"trl-{r}")
        runs["fire-mpo"] += ours(text, model, "fire-mpo", args, work / f"fire-{r}")
        runs["fire-mpo-images"] += ours(images, model, "fire-mpo", args, work / f"fire-img-{r}")
    med = {k: statistics.median(v) * 1000 for k, v in runs.items() if v}
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl_version}, "
          f"{args.threads} thread(s), batch {args.batch_size} pairs, {args.rounds} x {args.steps - args.warmup} "
          f"timed steps each")
    print(f"text pairs: {text_from}; image pairs: {image_from}")
    print(f"train-pairs dpo          {med['dpo']:8.1f} ms/step   (reference log-probs once per pair, the default)")
    print(f"train-pairs dpo no cache {med['dpo-no-cache']:8.1f} ms/step   (--no-cache-ref: reference every step)")
    if "trl" in med:
        ratio = med["dpo"] / med["trl"]
        print(f"TRL DPOTrainer           {med['trl']:8.1f} ms/step   ratio dpo/TRL {ratio:.2f} "
              f"({'OK' if ratio <= 0.8 else 'over'} target <= 0.8); without the cache "
              f"{med['dpo-no-cache'] / med['trl']:.2f}")
    else:
        print("TRL DPOTrainer           not installed (pip install trl)")
    print(f"train-pairs fire-mpo     {med['fire-mpo']:8.1f} ms/step   (text pairs: rank + token KL)")
    print(f"train-pairs fire-mpo img {med['fire-mpo-images']:8.1f} ms/step   (image pairs: + visual term)")


if __name__ == "__main__":
    main()
