"""The training recipe: shards in, a preference-tuned model and RUN_DIR/metrics.jsonl out.

Read `train()` top to bottom: device and precision, model and reference, data, optimiser and schedule,
resume, the loop (gradient accumulation, clipping, metrics, checkpoints), the final save. The objective
itself lives in trainer/losses.py; `preference_step` below only gathers its inputs from one batch.

Precision: fp32 on the CPU; on a GPU the policy keeps fp32 weights and runs under bf16 autocast (small
DPO learning rates vanish in bf16 weights), the frozen reference is stored in bf16.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from trainer.checkpoint import (
    latest_checkpoint,
    load_checkpoint_weights,
    load_trainer_state,
    save_checkpoint,
    save_model,
)
from trainer.data import (
    BatchStream,
    PairBatch,
    PairEncoder,
    PairShards,
    read_manifest_tokenizer,
    shard_files,
)
from trainer.distributed import World, average_gradients, average_metrics, barrier, clip_grad_norm, init_world
from trainer.features import SharedImageFeatures, shares_image_features
from trainer.fsdp import any_rank, fsdp_requested, shard
from trainer.logps import DEFAULT_CHUNK, body_of, chunked_kl, chunked_logps, head_of, response_hidden, unwrap
from trainer.losses import preference_loss
from trainer.model import Reference, RefLogpsCache, add_lora, load_policy
from trainer.presets import Preset, get_preset
from trainer.tracking import Trackers, check_report_to

log = logging.getLogger(__name__)

TINY_LR = 5e-3  # random tiny weights need large steps to move within a few dozen steps
MODEL_LR = 5e-7  # a usual DPO learning rate for a pretrained model


@dataclass
class TrainConfig:
    shards: Path
    out: Path
    model: Path | None = None  # None: build the tiny random-weight model into OUT/tiny-model
    steps: int = 100
    preset: str = "fire-mpo"
    lr: float | None = None  # None: TINY_LR for the tiny model, MODEL_LR otherwise
    batch_size: int = 4
    grad_accum: int = 1
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    save_every: int = 0  # 0: checkpoint only at the end
    keep_checkpoints: int = 2
    resume: bool = False
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int | None = None  # None: 2 x r
    lora_dropout: float = 0.0
    rslora: bool = False
    gradient_checkpointing: bool = False
    fsdp: bool = False  # shard parameters, gradients and optimiser state (trainer/fsdp.py); also via accelerate
    logps_chunk: int = DEFAULT_CHUNK  # response tokens per chunk of the output head
    report_to: tuple[str, ...] = ()  # tensorboard, wandb (offline)
    teacher: Path | None = None  # MedAlign presets: a local CLIP-style vision model folder
    medalign_layer: int | None = None  # policy layer whose visual tokens are aligned (default: the middle one)
    cache_ref: bool | None = None  # None: on for presets without the KL (reference log-probs once per pair)
    image_features_once: bool | None = None  # None: on when the vision tower is frozen and shared (LoRA)
    max_length: int | None = None
    precision: str = "auto"  # auto | fp32 | bf16-mixed
    device: str | None = None
    num_workers: int = 0
    progress: bool = True
    beta: float | None = None
    gamma: float | None = None
    lambda_: float | None = None
    alpha: float | None = None


def idle_forward(model, batch: PairBatch) -> Tensor:
    """A one-token forward whose value is 0: under FSDP a process with nothing to run here still makes the
    all-gathers (and, through the 0-weighted loss, the reduce-scatters) the other processes make."""
    out = body_of(model)(input_ids=batch.input_ids[:1, :1], attention_mask=batch.attention_mask[:1, :1],
                         use_cache=False)
    return out.last_hidden_state.sum() * 0.0


def preference_step(
    policy, reference: Reference, batch: PairBatch, preset: Preset, cache: RefLogpsCache | None = None,
    chunk: int = DEFAULT_CHUNK, agree: Callable[[bool], bool] | None = None,
    features: SharedImageFeatures | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Per-pair losses [B] and metrics of one batch: the forwards that feed `preference_loss`.

    Log-probs come from hidden states in chunks over response tokens (trainer/logps.py); the reference
    runs under no_grad, and not at all for a pair whose log-probs are cached and no KL is needed.
    `agree(flag)`: under FSDP, true on every process when true on one (trainer/fsdp.py), so all processes
    run the same forwards; the identity otherwise. `features` (a frozen vision tower, trainer/features.py):
    each image is encoded once and its features reused by every forward of the step.
    """
    agree = agree or (lambda flag: flag)
    idle = None
    n = batch.num_pairs
    mask = batch.edit_mask if preset.use_edit_masks else batch.response_mask
    resp_len = batch.labels.shape[1]
    head = head_of(policy)
    clean = features.inputs(body_of(policy), batch.image_inputs, 2 * n) if features else None

    # Clean images: policy and reference log-probs of every response token (chosen rows, then rejected).
    hidden = response_hidden(policy, batch, None, clean)
    logps = chunked_logps(head, hidden, batch.labels, batch.response_mask, chunk)
    ref_logps = cache.lookup(batch.pair_ids, "clean", resp_len, logps.device) if cache else None
    kl_forward = kl_reverse = None
    if agree(ref_logps is None) or preset.needs_kl:
        with reference.active() as ref:
            ref_hidden = response_hidden(ref, batch, None, clean)
            ref_head = head_of(ref)
            ref_logps = chunked_logps(ref_head, ref_hidden, batch.labels, batch.response_mask, chunk)
        if cache is not None:
            cache.store(batch.pair_ids, "clean", ref_logps, batch.response_mask)
        if preset.needs_kl:  # only at the chosen positions the KL is summed over
            kl_mask = mask[:n] * batch.response_mask[:n]
            with reference.active():  # LoRA: the reference head is the policy's, adapters off
                kl_forward, kl_reverse = chunked_kl(head, ref_head, hidden[:n], ref_hidden[:n], kl_mask, chunk)
        del ref_hidden

    # Corrupted images: the same texts again, for the pairs that have a corrupted image.
    corrupt: dict[str, Tensor] = {}
    visual_mask = None
    has_corrupt = preset.needs_corrupt and len(batch.corrupt_pairs) > 0
    if preset.needs_corrupt and agree(has_corrupt) and not has_corrupt:  # others score corrupted images
        idle = idle_forward(policy, batch)
        if agree(False):
            with reference.active() as ref_model:
                idle_forward(ref_model, batch)
    if has_corrupt:
        idx = batch.corrupt_pairs
        rows = torch.cat([idx, idx + n])
        labels, resp_mask = batch.labels[rows], batch.response_mask[rows]
        corrupt_inputs = features.inputs(body_of(policy), batch.corrupt_inputs, len(rows)) if features \
            else batch.corrupt_inputs
        pol = chunked_logps(head, response_hidden(policy, batch, rows, corrupt_inputs), labels, resp_mask, chunk)
        ids = [batch.pair_ids[i] for i in idx.tolist()]
        ref = cache.lookup(ids, "corrupt", resp_len, pol.device) if cache else None
        if agree(ref is None):
            with reference.active() as ref_model:
                ref = chunked_logps(head_of(ref_model), response_hidden(ref_model, batch, rows, corrupt_inputs),
                                    labels, resp_mask, chunk)
            if cache is not None:
                cache.store(ids, "corrupt", ref, resp_mask)
        for name, values in (("policy", pol), ("ref", ref)):
            full = torch.zeros(2 * n, resp_len, dtype=values.dtype, device=values.device)
            full = full.index_copy(0, rows, values)
            corrupt[f"{name}_chosen_corrupt"], corrupt[f"{name}_rejected_corrupt"] = full[:n], full[n:]
        visual_mask = torch.zeros(n, device=pol.device).index_fill(0, idx, 1.0)

    losses, metrics = preference_loss(
        logps[:n], logps[n:], ref_logps[:n], ref_logps[n:], mask[:n], mask[n:],
        **corrupt, kl_forward=kl_forward, kl_reverse=kl_reverse, visual_mask=visual_mask,
        **preset.loss_kwargs(),
    )
    return (losses if idle is None else losses + idle), metrics


def sft_step(policy, adapter, batch: PairBatch, chunk: int = DEFAULT_CHUNK) -> tuple[Tensor, dict[str, float]]:
    """Supervised fine-tuning on the chosen responses: per pair, the mean negative log-likelihood of its
    response tokens,  L = - (1 / |y_w|) sum_t log pi_theta(y_w,t | x, y_w,<t)."""
    n = batch.num_pairs
    rows = torch.arange(n, device=batch.input_ids.device)
    mask = batch.response_mask[:n]
    hidden = response_hidden(policy, batch, rows, batch.chosen_image_inputs(adapter))
    logps = chunked_logps(head_of(policy), hidden, batch.labels[:n], mask, chunk)
    losses = -(logps * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    mean = float(losses.detach().mean())
    return losses, {"loss": mean, "nll": mean}


def build_default_model(run_dir: Path, seed: int, world: World) -> Path:
    """No --model: the tiny random-weight LLaVA in RUN/tiny-model (built by the main process)."""
    from models.tiny_model import build_tiny_model

    model_path = run_dir / "tiny-model"
    if world.main:
        if not (model_path / "config.json").is_file():
            print(f"train-pairs: no --model given; building a tiny random-weight model into {model_path}")
            build_tiny_model(model_path, seed=seed)
        else:
            print(f"train-pairs: no --model given; using the tiny random-weight model in {model_path}")
    barrier(world)
    return model_path


def train(cfg: TrainConfig) -> Path:
    """Train on the shard folder `cfg.shards`; write metrics, checkpoints and the final model to `cfg.out`.

    Under torchrun / accelerate launch every process runs this; `cfg.batch_size` is per process and only
    the main process writes.
    """
    run_dir = Path(cfg.out)
    shard_files(cfg.shards)  # fail before any model loads
    if cfg.model is not None and not (Path(cfg.model) / "config.json").is_file():
        raise FileNotFoundError(f"--model {cfg.model}: not a model folder (no config.json)")
    reporters = check_report_to(list(cfg.report_to))
    preset = get_preset(cfg.preset, beta=cfg.beta, gamma=cfg.gamma, lambda_=cfg.lambda_, alpha=cfg.alpha)
    fsdp = fsdp_requested(cfg.fsdp)
    if fsdp and preset.medalign:
        raise ValueError(f"preset {preset.name}: MedAlign's terms are not supported under FSDP yet (their "
                         "teacher and projection are not sharded); use a DDP launch")

    # 1. Device, processes and precision.
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    world = init_world(device.type, group=fsdp)
    if device.type == "cuda" and world.size > 1 and cfg.device is None:
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if world.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    precision = cfg.precision if cfg.precision != "auto" else ("bf16-mixed" if device.type == "cuda" else "fp32")
    if precision not in ("fp32", "bf16-mixed"):
        raise ValueError(f"unknown precision {cfg.precision!r}; valid: auto, bf16-mixed, fp32")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    ref_dtype = torch.bfloat16 if precision == "bf16-mixed" else None

    # 2. Model, its adapter (processor, prompt, batching) and the frozen reference.
    model_path = cfg.model if cfg.model is not None else build_default_model(run_dir, cfg.seed, world)
    lr = cfg.lr if cfg.lr is not None else (MODEL_LR if cfg.model is not None else TINY_LR)
    policy, adapter = load_policy(model_path, torch.float32, device)
    if cfg.gradient_checkpointing:
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora:
        policy = add_lora(policy, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, rslora=cfg.rslora)
    reference = Reference(policy, dtype=ref_dtype)
    policy.train()
    ckpt = latest_checkpoint(run_dir) if cfg.resume else None
    if ckpt is not None:  # before FSDP shards the weights; the reference keeps the original ones
        load_checkpoint_weights(policy, adapter, ckpt)
    root = None
    if fsdp:  # parameters sharded over the processes (trainer/fsdp.py); gradients reduced by FSDP
        root = shard(policy, mixed_bf16=precision == "bf16-mixed")
        if reference.model is not None:
            shard(reference.model)
    use_cache = (not preset.needs_kl) if cfg.cache_ref is None else cfg.cache_ref
    cache = RefLogpsCache() if use_cache and not preset.needs_kl else None
    if cfg.cache_ref and cache is None:
        log.warning("--cache-ref ignored: preset %s needs the reference's full distribution (KL)", preset.name)

    medalign = None
    teacher_processor = None
    if preset.medalign:
        if cfg.teacher is None:
            raise ValueError(f"preset {preset.name} needs --teacher DIR (a local CLIP-style vision model folder)")
        from trainer.medalign_terms import MedAlignTerms, load_teacher

        teacher, teacher_processor = load_teacher(cfg.teacher, device)
        base = unwrap(policy)
        base.set_attn_implementation("eager")  # the terms read one layer's attention weights
        text = base.config.get_text_config()
        layer = cfg.medalign_layer or max(1, text.num_hidden_layers // 2)
        medalign = MedAlignTerms(teacher, adapter, text.hidden_size, layer, preset.sim_weight,
                                 preset.attn_weight).to(device)

    # 3. Data: shard rows -> encoded pairs -> padded 2B-row batches, this process's slice of each.
    shards = PairShards(cfg.shards)
    encoder = PairEncoder(adapter, base_dir=shards.shards_dir, max_length=cfg.max_length,
                          teacher_processor=teacher_processor)
    shard_tok = read_manifest_tokenizer(cfg.shards)

    # 4. Optimiser and schedule.
    trainable = [p for p in policy.parameters() if p.requires_grad]  # under FSDP: this process's shards
    agree = (lambda flag: any_rank(flag, world)) if root is not None else None
    features_once = shares_image_features(adapter, policy, reference)
    if cfg.image_features_once and not features_once:
        raise ValueError(f"--image-features-once: not exact here ({adapter.name}: needs a family that takes "
                         "precomputed image features and --lora with the vision tower frozen)")
    features_once = features_once if cfg.image_features_once is None else cfg.image_features_once
    if medalign is not None:
        trainable.append(medalign.projection)
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=cfg.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.steps)

    # 5. Resume: weights, optimiser, schedule, RNG and the position in the data order.
    start_step = 0
    metrics_path = run_dir / "metrics.jsonl"
    if ckpt is not None:
        state = load_trainer_state(ckpt, optimizer, scheduler, root)
        start_step = state["step"]
        if medalign is not None and "medalign" in state:
            medalign.load_state_dict(state["medalign"])
        if world.main:
            print(f"train-pairs: resuming from {ckpt} at step {start_step}")
    trackers = None
    if world.main:
        kept = []
        if start_step and metrics_path.is_file():
            kept = [ln for ln in metrics_path.read_text().splitlines() if json.loads(ln)["step"] <= start_step]
        metrics_path.write_text("".join(ln + "\n" for ln in kept))
        resolved = {**{k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
                    "model_path": str(model_path), "adapter": adapter.name, "lr": lr, "precision": precision,
                    "device": str(device), "world_size": world.size, "fsdp": fsdp,
                    "image_features_once": features_once, "preset_values": asdict(preset),
                    "shard_tokenizer": shard_tok, "pairs": len(shards)}
        (run_dir / "train_config.json").write_text(json.dumps(resolved, indent=2))
        trackers = Trackers(reporters, run_dir, resolved)

    def saved_extra() -> dict:
        return {"medalign": medalign.state_dict()} if medalign is not None else {}

    stream_of = BatchStream(shards, encoder, cfg.batch_size, cfg.seed, skip=start_step * cfg.grad_accum,
                            rank=world.rank, world=world.size)
    loader = torch.utils.data.DataLoader(stream_of, batch_size=None, num_workers=cfg.num_workers,
                                         pin_memory=device.type == "cuda")
    stream = (batch.to(device) for batch in loader)

    # 6. The loop.
    rederived = 0
    bar = tqdm(range(start_step, cfg.steps), initial=start_step, total=cfg.steps,
               disable=not (cfg.progress and world.main), desc=f"train-pairs {preset.name}")
    metrics_file = metrics_path.open("a") if world.main else None
    try:
        for step in bar:
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            totals: dict[str, float] = {}
            for _ in range(cfg.grad_accum):
                batch = next(stream)
                rederived += batch.n_rederived
                with autocast:
                    if preset.sft:
                        losses, metrics = sft_step(policy, adapter, batch, cfg.logps_chunk)
                    else:
                        losses, metrics = preference_step(
                            policy, reference, batch, preset, cache, cfg.logps_chunk, agree=agree,
                            features=SharedImageFeatures(adapter) if features_once else None)
                    if medalign is not None:
                        terms, extra = medalign(policy, batch)
                        losses = losses + terms
                        metrics = {**metrics, "loss": float(losses.detach().mean()), **extra}
                (losses.mean() / cfg.grad_accum).backward()
                for key, value in metrics.items():
                    totals[key] = totals.get(key, 0.0) + value / cfg.grad_accum
            if root is None:  # FSDP has reduce-scattered the gradients already
                average_gradients(trainable, world)
            totals = average_metrics(totals, world)
            grad_norm = clip_grad_norm(trainable, cfg.max_grad_norm, sharded=root is not None)
            lr_now = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            record = {"step": step + 1, **totals, "grad_norm": float(grad_norm), "lr": lr_now,
                      "step_time": time.perf_counter() - started}
            if world.main:
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
                trackers.log(record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", acc=f"{record.get('reward_accuracy', 0):.2f}")
            if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
                save_checkpoint(run_dir, step + 1, policy, adapter, optimizer, scheduler, cfg.keep_checkpoints,
                                saved_extra(), root, world)
    finally:
        if metrics_file is not None:
            metrics_file.close()
        if trackers is not None:
            trackers.close()

    # 7. The final checkpoint (resumable) and the trained model, written by the main process.
    if cfg.steps > start_step:
        save_checkpoint(run_dir, cfg.steps, policy, adapter, optimizer, scheduler, cfg.keep_checkpoints,
                        saved_extra(), root, world)
    save_model(policy, adapter, run_dir / "final", root, world)
    if world.main:
        if rederived:
            print(f"train-pairs: {rederived} pair encodings re-derived their token masks from the edits "
                  f"(the shard's token ids differ from this model's tokenizer)")
    barrier(world)
    return run_dir
