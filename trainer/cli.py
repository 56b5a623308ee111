"""`train-pairs`: train a vision-language model on a `build-pairs run` shard folder (CONTRACT.md section 2).

    train-pairs --shards OUT_DIR --out RUN_DIR [--model PATH] [--steps N] [--preset fire-mpo]
                [--lr LR] [--batch-size B] [--grad-accum K] [--resume] [--lora] ...

`--batch-size` is per process: `torchrun --nproc_per_node 2 $(which train-pairs) --batch-size 2 ...` trains
on the global batches of one process with `--batch-size 4` (docs/TRAINING.md).

With no --model it builds the tiny random-weight model (as `build-pairs tiny-model`) into RUN_DIR/tiny-model
and says so. Writes RUN_DIR/metrics.jsonl (one JSON object per optimisation step), checkpoints under
RUN_DIR/checkpoints/ and the trained model in RUN_DIR/final/.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from trainer.presets import DEFAULT_PRESET, PRESETS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="train-pairs", description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", type=Path, required=True, help="OUT_DIR of `build-pairs run` (shard-*.parquet)")
    p.add_argument("--out", type=Path, required=True, help="RUN_DIR for metrics.jsonl, checkpoints, final/")
    p.add_argument("--model", type=Path, default=None, help="HF vision-language model folder (default: tiny)")
    p.add_argument("--steps", type=int, default=100, help="optimisation steps (default 100)")
    p.add_argument("--preset", default=DEFAULT_PRESET, help=f"one of {', '.join(PRESETS)} (default {DEFAULT_PRESET})")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 5e-7; tiny model 5e-3)")
    p.add_argument("--batch-size", type=int, default=4, help="pairs per micro-batch (default 4)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimisation step (default 1)")
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--max-length", type=int, default=None, help="cap on prompt+response tokens (responses cut)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps (default: at the end)")
    p.add_argument("--keep-checkpoints", type=int, default=2)
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR's latest checkpoint")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (needs peft); reference = adapters off")
    p.add_argument("--lora-r", type=int, default=16, help="LoRA rank (FiRe-MPO: 128)")
    p.add_argument("--lora-alpha", type=int, default=None, help="LoRA alpha (default 2 x r; FiRe-MPO: 256)")
    p.add_argument("--lora-dropout", type=float, default=0.0, help="LoRA dropout (FiRe-MPO: 0.05)")
    p.add_argument("--rslora", action="store_true", help="rank-stabilised LoRA scaling alpha/sqrt(r)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in backward")
    p.add_argument("--fsdp", action="store_true",
                   help="shard parameters, gradients, optimiser state over processes (FSDP2; docs/TRAINING.md)")
    p.add_argument("--logps-chunk", type=int, default=1024, help="response tokens per output-head chunk")
    p.add_argument("--teacher", type=Path, default=None, help="MedAlign presets: local CLIP vision model folder")
    p.add_argument("--medalign-layer", type=int, default=None, help="policy layer aligned (default: middle)")
    p.add_argument("--report-to", nargs="+", default=["none"], help="none, tensorboard, wandb (offline)")
    p.add_argument("--cache-ref", action=argparse.BooleanOptionalAction, default=None,
                   help="reference log-probs once per pair (default: on for presets without the KL)")
    p.add_argument("--image-features-once", action=argparse.BooleanOptionalAction, default=None,
                   help="encode each image once per step for every forward (default: on with --lora, frozen vision)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16-mixed"])
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers encoding batches (default 0)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--beta", type=float, default=None, help="override the preset's beta")
    p.add_argument("--gamma", type=float, default=None, help="override the preset's gamma (visual term)")
    p.add_argument("--lambda", dest="lambda_", type=float, default=None, help="override the KL mix lambda")
    p.add_argument("--alpha", type=float, default=None, help="override the preset's alpha (KL weight)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1")):
        os.environ.setdefault(key, value)
    from trainer.loop import TrainConfig, train  # heavy imports after argument parsing
    from trainer.presets import get_preset

    try:
        get_preset(args.preset)
    except ValueError as err:
        print(f"train-pairs: {err}", file=sys.stderr)
        return 2
    cfg = TrainConfig(
        shards=args.shards, out=args.out, model=args.model, steps=args.steps, preset=args.preset, lr=args.lr,
        batch_size=args.batch_size, grad_accum=args.grad_accum, warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm, max_length=args.max_length,
        seed=args.seed, save_every=args.save_every, keep_checkpoints=args.keep_checkpoints, resume=args.resume,
        lora=args.lora, lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
        rslora=args.rslora, gradient_checkpointing=args.gradient_checkpointing, fsdp=args.fsdp, logps_chunk=args.logps_chunk,
        report_to=tuple(args.report_to), teacher=args.teacher, medalign_layer=args.medalign_layer, cache_ref=args.cache_ref, image_features_once=args.image_features_once, precision=args.precision,
        device=args.device, num_workers=args.workers, progress=not args.no_progress, beta=args.beta, gamma=args.gamma,
        lambda_=args.lambda_, alpha=args.alpha,
    )
    from trainer.distributed import close

    try:
        run_dir = train(cfg)
    except (OSError, ValueError, ImportError) as err:
        print(f"train-pairs: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    finally:
        close()
    if os.environ.get("RANK", "0") == "0":
        print(f"train-pairs: done; metrics in {run_dir / 'metrics.jsonl'}, model in {run_dir / 'final'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
