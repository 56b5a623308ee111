"""The trainer on real shards: IU X-ray generations (text) and VQA-RAD chest images, with the tiny model.

Shards come from trainer/devdata.py (real data, word-diff edits) so the trainer is tested alone; the
slow tests at the end use shards written by the project's own `build-pairs run` when it can produce them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from models.tiny_model import IMAGE_TOKENS, TOKENIZER_DIR, build_tiny_model, load_project_tokenizer  # noqa: E402
from trainer.data import (  # noqa: E402
    PairEncoder,
    PairShards,
    collate_pairs,
    rederive_masks,
    shard_files,
)
from trainer.devdata import SHARED_DATA, iu_text_pairs, vqa_image_pairs, write_shard  # noqa: E402
from trainer.logps import chunked_logps, head_of, response_hidden  # noqa: E402
from trainer.loop import TrainConfig, preference_step, train  # noqa: E402
from trainer.model import Reference, load_policy, peft_available  # noqa: E402


def response_logps(model, batch):
    """Per-token log-probs of every response token of the batch's 2B rows, as the trainer scores them."""
    return chunked_logps(head_of(model), response_hidden(model, batch), batch.labels, batch.response_mask)
from trainer.presets import get_preset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IU = SHARED_DATA / "iu_xray_model_generations" / "generations.jsonl"
VQA = SHARED_DATA / "vqa_rad" / "qa.jsonl"

pytestmark = [
    pytest.mark.skipif(not (TOKENIZER_DIR / "tokenizer.json").is_file(), reason="project tokenizer not built"),
    pytest.mark.skipif(not IU.is_file() or not VQA.is_file(), reason=f"shared data absent under {SHARED_DATA}"),
]


@pytest.fixture(scope="module")
def tokenizer():
    return load_project_tokenizer()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def policy(tiny):
    return load_policy(tiny, torch.float32, torch.device("cpu"))


@pytest.fixture(scope="module")
def iu_shards(tokenizer, tmp_path_factory):
    return write_shard(iu_text_pairs(tokenizer), tmp_path_factory.mktemp("iu"))


@pytest.fixture(scope="module")
def mixed_shards(tokenizer, tmp_path_factory):
    """Two shards: 3 text-only IU pairs, then 3 VQA-RAD image pairs with corrupted images."""
    out = tmp_path_factory.mktemp("mixed")
    write_shard(iu_text_pairs(tokenizer, limit=3), out, "shard-00000.parquet")
    write_shard(vqa_image_pairs(tokenizer, limit=3), out, "shard-00001.parquet")
    return out


def encoded(policy, shards_dir, **kw):
    _, adapter = policy
    shards = PairShards(shards_dir)
    encoder = PairEncoder(adapter, base_dir=shards_dir, **kw)
    return shards, encoder


# --- data ------------------------------------------------------------------------------------------------


def test_shard_masks_are_used_when_token_ids_match(policy, iu_shards, tokenizer):
    shards, encoder = encoded(policy, iu_shards)
    row = shards[0]
    pair = encoder(row)
    eos = tokenizer.eos_token_id
    assert pair.chosen_ids == row["chosen_input_ids"] + [eos]
    assert pair.rejected_ids == row["rejected_input_ids"] + [eos]
    assert pair.chosen_mask == row["chosen_token_mask"] + [0]
    assert pair.rejected_mask == row["rejected_token_mask"] + [0]
    assert not pair.masks_rederived and encoder.n_rederived == 0
    # prompt tokenized alone: exactly the chat-formatted prompt, no response token merged into it
    text = encoder.adapter.render_prompt(row["prompt"], 0)
    assert text.startswith("<|user|> ") and text.endswith("<|assistant|> ")
    assert pair.prompt_ids == tokenizer(text, add_special_tokens=False).input_ids
    assert pair.image_inputs == {} and pair.corrupt_inputs is None  # text-only pair, text-only run


def test_masks_are_rederived_from_edits_when_token_ids_differ(policy, iu_shards, tokenizer):
    shards, encoder = encoded(policy, iu_shards)
    row = shards[1]
    want_c, want_r = row["chosen_token_mask"], row["rejected_token_mask"]
    # a shard written with another tokenizer: character-level ids and masks
    row["chosen_input_ids"] = [ord(c) for c in row["chosen"]]
    row["rejected_input_ids"] = [ord(c) for c in row["rejected"]]
    row["chosen_token_mask"] = [0] * len(row["chosen"])
    row["rejected_token_mask"] = [0] * len(row["rejected"])
    pair = encoder(row)
    assert pair.masks_rederived and encoder.n_rederived == 1
    assert pair.chosen_mask[:-1] == want_c and pair.rejected_mask[:-1] == want_r
    # independently: every token with a character inside an edit is marked (the pipeline's rule may mark
    # more: tokens re-split next to an edit)
    inside = [False] * len(row["chosen"])
    for e in row["edits"]:
        for i in range(e["chosen_start"], e["chosen_end"]):
            inside[i] = True
    enc = tokenizer(row["chosen"], add_special_tokens=False, return_offsets_mapping=True)
    for (a, b), m in zip(enc.offset_mapping, pair.chosen_mask, strict=False):
        if any(inside[a:b]):
            assert m == 1
    assert sum(any(inside[a:b]) for a, b in enc.offset_mapping) <= sum(pair.chosen_mask) < len(pair.chosen_mask)


def test_misaligned_edits_raise_naming_the_pair(policy, iu_shards):
    shards, encoder = encoded(policy, iu_shards)
    row = shards[2]
    row["chosen_input_ids"] = [1, 2, 3]
    row["edits"][0]["after"] = row["edits"][0]["after"] + "x"
    with pytest.raises(ValueError, match=row["pair_id"]):
        encoder(row)


def test_image_tokens_are_never_truncated(policy, mixed_shards):
    shards, encoder = encoded(policy, mixed_shards)
    image_row = shards[len(shards) - 1]
    full = encoder(image_row)
    image_id = encoder.tokenizer.image_token_id
    assert full.prompt_ids.count(image_id) == IMAGE_TOKENS
    assert tuple(full.image_inputs["pixel_values"].shape) == (1, 3, 224, 224)
    assert not torch.equal(full.image_inputs["pixel_values"], full.corrupt_inputs["pixel_values"])
    cut = PairEncoder(encoder.adapter, max_length=len(full.prompt_ids) + 1)(image_row)
    assert cut.prompt_ids == full.prompt_ids and len(cut.chosen_ids) == 1
    assert PairEncoder(encoder.adapter, max_length=len(full.prompt_ids) - 5)(image_row) is None


def test_response_log_probs_match_an_unpadded_forward_row_by_row(policy, mixed_shards):
    model, _ = policy
    shards, encoder = encoded(policy, mixed_shards)
    pairs = [encoder(shards[i]) for i in (0, 3, 1, 4)]  # text, image, text, image: unequal prompt lengths
    batch = collate_pairs(pairs, encoder.adapter)
    with torch.no_grad():
        got = response_logps(model, batch)
        rows = [(p, p.chosen_ids) for p in pairs] + [(p, p.rejected_ids) for p in pairs]
        for i, (pair, resp) in enumerate(rows):
            ids = torch.tensor([pair.prompt_ids + resp])
            logits = model(input_ids=ids, **pair.image_inputs).logits[0]
            p = len(pair.prompt_ids)
            alone = torch.log_softmax(logits[p - 1 : p + len(resp) - 1], -1).gather(
                -1, torch.tensor(resp).unsqueeze(-1)).squeeze(-1)
            torch.testing.assert_close(got[i, : len(resp)], alone, atol=1e-6, rtol=1e-6)
            assert (got[i, len(resp):] == 0).all()  # padding scores nothing


def test_visual_term_only_for_pairs_with_a_corrupted_image(policy, mixed_shards):
    model, _ = policy
    shards, encoder = encoded(policy, mixed_shards)
    batch = collate_pairs([encoder(shards[i]) for i in (0, 3, 1, 4)], encoder.adapter)
    assert batch.corrupt_pairs.tolist() == [1, 3]
    reference = Reference(model)
    with torch.no_grad():
        # perturb the policy so that policy != reference and every term is non-trivial
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        fire, metrics = preference_step(model, reference, batch, get_preset("fire-mpo"))
        no_visual, _ = preference_step(model, reference, batch, get_preset("fire-mpo", gamma=0.0))
        for p, q in zip(model.parameters(), reference.model.parameters(), strict=True):
            p.copy_(q)
    diff = (fire - no_visual).tolist()
    assert diff[0] == pytest.approx(0, abs=1e-7) and diff[2] == pytest.approx(0, abs=1e-7)
    assert diff[1] > 0 and diff[3] > 0  # gamma * visual, visual = -log sigma(...) > 0
    assert metrics["visual"] == pytest.approx((diff[1] + diff[3]) / 2 / 0.1, rel=1e-4)
    assert metrics["kl"] > 0


# --- reference ---------------------------------------------------------------------------------------------


def test_reference_copy_stays_frozen_while_the_policy_trains(tiny, iu_shards):
    model, adapter = load_policy(tiny, torch.float32, torch.device("cpu"))
    reference = Reference(model)
    before = {k: v.clone() for k, v in reference.model.state_dict().items()}
    shards = PairShards(iu_shards)
    encoder = PairEncoder(adapter)
    batch = collate_pairs([encoder(shards[i]) for i in range(4)], adapter)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses, _ = preference_step(model, reference, batch, get_preset("fire-mpo"))
    losses.mean().backward()
    opt.step()
    after = reference.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not p.requires_grad for p in reference.model.parameters())


@pytest.mark.skipif(not peft_available(), reason="peft not installed (optional)")
def test_lora_reference_is_the_base_model_with_adapters_off(tiny, iu_shards):
    from trainer.model import add_lora

    base, adapter = load_policy(tiny, torch.float32, torch.device("cpu"))
    shards = PairShards(iu_shards)
    encoder = PairEncoder(adapter)
    batch = collate_pairs([encoder(shards[i]) for i in range(2)], adapter)
    with torch.no_grad():
        want = response_logps(base, batch)
    model = add_lora(base, r=4)
    reference = Reference(model)
    assert reference.uses_adapters and reference.model is None
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        preference_step(model, reference, batch, get_preset("dpo"))[0].mean().backward()
        opt.step()
    with reference.active() as ref:
        torch.testing.assert_close(response_logps(ref, batch), want)
    with torch.no_grad():
        assert not torch.allclose(response_logps(model, batch), want)


# --- the loop, the command, resume -------------------------------------------------------------------------


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def learning_figures(metrics: list[dict]) -> tuple[float, float, float]:
    loss = [m["loss"] for m in metrics]
    acc = [m["reward_accuracy"] for m in metrics]
    return sum(loss[:10]) / 10, sum(loss[-10:]) / 10, sum(acc[-10:]) / 10


@pytest.mark.slow
def test_forty_steps_on_iu_pairs_learn_the_preference(iu_shards, tiny, tmp_path):
    started = time.perf_counter()
    run = train(TrainConfig(shards=iu_shards, out=tmp_path / "run", model=tiny, steps=40, batch_size=4,
                            lr=5e-3, progress=False))
    first, last, acc = learning_figures(read_metrics(run))
    print(f"fire-mpo 40 steps: loss first10 {first:.4f} last10 {last:.4f} acc last10 {acc:.3f} "
          f"({time.perf_counter() - started:.1f} s)")
    assert last < first
    assert acc >= 0.75


def test_cli_builds_the_tiny_model_says_so_and_writes_metrics(mixed_shards, tmp_path, capsys):
    from trainer.cli import main

    run = tmp_path / "run"
    assert main(["--shards", str(mixed_shards), "--out", str(run), "--steps", "2", "--batch-size", "6",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and str(run / "tiny-model") in out
    metrics = read_metrics(run)
    assert [m["step"] for m in metrics] == [1, 2]
    for key in ("step", "loss", "rank", "visual", "kl", "reward_accuracy", "margin", "chosen_reward",
                "rejected_reward"):
        assert all(isinstance(m[key], (int, float)) for m in metrics), key
    assert metrics[0]["visual"] > 0  # the image pairs of the batch carry the visual term
    assert (run / "final" / "config.json").is_file() and (run / "checkpoints" / "step-000002").is_dir()


def test_cli_unknown_preset_lists_valid_names(mixed_shards, tmp_path, capsys):
    from trainer.cli import main

    assert main(["--shards", str(mixed_shards), "--out", str(tmp_path / "r"), "--preset", "ppo"]) != 0
    err = capsys.readouterr().err
    assert "ppo" in err and all(name in err for name in ("dpo", "mask-dpo", "rrpo", "fire-mpo"))
    assert main(["--shards", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r2"), "--model", "x"]) != 0
    assert "shard-" in capsys.readouterr().err


def test_resume_after_a_crash_replays_the_same_steps(tiny, mixed_shards, tmp_path):
    cfg = TrainConfig(shards=mixed_shards, out=tmp_path / "run", model=tiny, steps=4, batch_size=2,
                      save_every=2, keep_checkpoints=5, progress=False)
    train(cfg)
    whole = read_metrics(cfg.out)
    shutil.rmtree(cfg.out / "checkpoints" / "step-000004")  # as if it died after step 2's checkpoint
    cfg.resume = True
    train(cfg)
    resumed = read_metrics(cfg.out)
    assert [m["step"] for m in resumed] == [1, 2, 3, 4]
    assert [m["loss"] for m in resumed] == pytest.approx([m["loss"] for m in whole], abs=1e-6)


# --- TRL and the project's own shards ---------------------------------------------------------------------


def trl_two_steps(shards_dir: Path, tiny: Path, out: Path) -> dict:
    pytest.importorskip("trl", reason="trl not installed (it resolves with transformers 5.24: pip install trl)")
    from datasets import load_dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import DPOConfig, DPOTrainer

    files = [str(f) for f in shard_files(shards_dir)]
    dataset = load_dataset("parquet", data_files=files, split="train")
    args = DPOConfig(output_dir=str(out), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-3,
                     report_to="none", save_strategy="no", use_cpu=True, logging_steps=1,
                     gradient_checkpointing=False, dataloader_num_workers=0)
    trainer = DPOTrainer(model=AutoModelForImageTextToText.from_pretrained(tiny), args=args,
                         train_dataset=dataset, processing_class=AutoProcessor.from_pretrained(tiny))
    result = trainer.train()
    return {"steps": result.global_step, "loss": result.training_loss}


def test_trl_dpo_trainer_trains_the_shard_folder_unchanged(iu_shards, tiny, tmp_path):
    result = trl_two_steps(iu_shards, tiny, tmp_path / "trl")
    assert result["steps"] == 2 and 0 < result["loss"] < 5


def build_pairs(fmt: str, source: Path, out: Path) -> Path:
    """Shards from the project's own `build-pairs import` + `run` (skip if it cannot run yet)."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PREFECT_HOME": str(out / "prefect"), "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    steps = [
        [str(bin_dir / "build-pairs"), "import", fmt, str(source), "--out", str(out / "s.jsonl")],
        [str(bin_dir / "build-pairs"), "run", "--samples", str(out / "s.jsonl"), "--out", str(out / "pairs")],
    ]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
        if done.returncode != 0:
            pytest.skip(f"build-pairs could not produce shards: {(done.stderr or done.stdout).strip()[-300:]}")
    if not list((out / "pairs").glob("shard-*.parquet")):
        pytest.skip(f"build-pairs run wrote no pairs for {fmt}")
    return out / "pairs"


@pytest.fixture(scope="module")
def pipeline_shards(tmp_path_factory):
    """IU X-ray generations (text-only) through `build-pairs`."""
    pairs = build_pairs("iu-generations", IU.parent, tmp_path_factory.mktemp("pipeline"))
    if len(PairShards(pairs)) < 20:
        pytest.skip("build-pairs run produced fewer than 20 IU pairs")
    return pairs


@pytest.fixture(scope="module")
def pipeline_image_shards(tmp_path_factory):
    """NIH ChestX-ray14 images with model reports through `build-pairs` (clean + corrupted images)."""
    source = SHARED_DATA / "nih_cxr14_rexrank_model_reports"
    if not source.is_dir():
        pytest.skip(f"{source} absent")
    return build_pairs("nih-reports", source, tmp_path_factory.mktemp("pipeline-img"))


@pytest.mark.slow
def test_pipeline_shards_match_the_tiny_tokenizer_and_its_mask_rule(pipeline_shards, policy):
    shards, encoder = encoded(policy, pipeline_shards)
    for i in range(len(shards)):
        row = shards[i]
        pair = encoder(row)
        assert not pair.masks_rederived, f"pair {row['pair_id']}: shard ids differ from the tiny tokenizer"
        _, _, mask_c, mask_r = rederive_masks(encoder.tokenizer, row)
        assert (mask_c, mask_r) == (row["chosen_token_mask"], row["rejected_token_mask"]), row["pair_id"]


@pytest.mark.slow
def test_forty_steps_on_pipeline_shards_learn_the_preference(pipeline_shards, tiny, tmp_path):
    run = train(TrainConfig(shards=pipeline_shards, out=tmp_path / "run", model=tiny, steps=40, batch_size=4,
                            lr=5e-3, progress=False))
    first, last, acc = learning_figures(read_metrics(run))
    print(f"pipeline shards, fire-mpo 40 steps: loss first10 {first:.4f} last10 {last:.4f} acc last10 {acc:.3f}")
    assert last < first and acc >= 0.75
    result = trl_two_steps(pipeline_shards, tiny, tmp_path / "trl")
    assert result["steps"] == 2


@pytest.mark.slow
def test_fire_mpo_trains_on_pipeline_image_shards_with_the_visual_term(pipeline_image_shards, policy, tiny,
                                                                      tmp_path):
    shards, encoder = encoded(policy, pipeline_image_shards)
    with_corrupt = [i for i in range(len(shards)) if shards[i]["corrupted_images"]]
    if not with_corrupt:
        pytest.skip("the pipeline made no corrupted image for the NIH pairs")
    pair = encoder(shards[with_corrupt[0]])
    assert not pair.masks_rederived and pair.corrupt_inputs is not None
    run = train(TrainConfig(shards=pipeline_image_shards, out=tmp_path / "run", model=tiny, steps=3, batch_size=2,
                            progress=False))
    metrics = read_metrics(run)
    assert len(metrics) == 3 and all(m["visual"] > 0 for m in metrics)


def test_cached_reference_log_probs_give_the_same_training(tiny, mixed_shards, tmp_path):
    runs = []
    for cache_ref in (False, True):
        cfg = TrainConfig(shards=mixed_shards, out=tmp_path / f"cache-{cache_ref}", model=tiny, steps=4,
                          batch_size=3, grad_accum=2, preset="mask-dpo", cache_ref=cache_ref, progress=False)
        runs.append(read_metrics(train(cfg)))
    assert [m["loss"] for m in runs[1]] == pytest.approx([m["loss"] for m in runs[0]], abs=1e-6)
    assert runs[0][-1]["margin"] != 0


@pytest.mark.slow
def test_trl_dpo_trainer_trains_image_shards_unchanged(pipeline_image_shards, tiny, tmp_path):
    """Pairs with images carry the image token in `prompt`, TRL's plain-text convention."""
    rows = PairShards(pipeline_image_shards)
    assert rows[0]["prompt"].startswith("<image>")
    result = trl_two_steps(pipeline_image_shards, tiny, tmp_path / "trl-img")
    assert result["steps"] == 2 and 0 < result["loss"] < 5


def test_report_to_tensorboard_and_wandb_offline_beside_metrics(tiny, mixed_shards, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard", reason="tensorboard not installed (pip install '.[tracking]')")
    pytest.importorskip("wandb", reason="wandb not installed (pip install '.[tracking]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = train(TrainConfig(shards=mixed_shards, out=tmp_path / "run", model=tiny, steps=3, batch_size=2,
                            progress=False, report_to=("tensorboard", "wandb")))
    losses = [m["loss"] for m in read_metrics(run)]
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(losses, rel=1e-6)
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))


def test_report_to_unknown_name_lists_the_valid_ones(mixed_shards, tmp_path):
    with pytest.raises(ValueError, match="mlflow.*tensorboard, wandb"):
        train(TrainConfig(shards=mixed_shards, out=tmp_path / "r", steps=1, report_to=("mlflow",)))
