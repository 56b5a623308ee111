"""Two processes (torchrun, gloo on the CPU) train exactly like one process with twice the batch.

`--batch-size` is per process, so 2 x 2 pairs per step under torchrun is the global batch of one process
with `--batch-size 4`: same losses and same final weights (to 1e-5), and only rank 0 writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.tiny import build_tiny
from models.tiny_model import load_project_tokenizer
from trainer.devdata import iu_text_pairs, two_view_pairs, vqa_image_pairs, write_shard

BIN = Path(sys.executable).parent


def run(cmd: list[str], tmp: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def mixed_qwen2_vl_run(shared, tmp: Path) -> list[str]:
    """train-pairs arguments over a tiny Qwen2-VL and shards that mix text-only, one-image and two-image pairs."""
    shared("vqa_rad", "qa.jsonl")
    tok = load_project_tokenizer()
    shards = tmp / "shards"
    write_shard(iu_text_pairs(tok, limit=4), shards, "shard-00000.parquet")
    write_shard(vqa_image_pairs(tok, limit=2), shards, "shard-00001.parquet")
    write_shard(two_view_pairs(tok, limit=2), shards, "shard-00002.parquet")
    model = build_tiny("qwen2_vl", tmp / "qwen2_vl")
    return ["--shards", str(shards), "--model", str(model), "--steps", "4", "--lr", "5e-3", "--no-progress"]


def test_two_gloo_processes_equal_one_process_with_the_global_batch(shared, tmp_path):
    common = [*mixed_qwen2_vl_run(shared, tmp_path), "--preset", "fire-mpo"]
    run([str(BIN / "train-pairs"), "--out", str(tmp_path / "one"), "--batch-size", "4", *common], tmp_path)
    run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(BIN / "train-pairs"),
         "--out", str(tmp_path / "two"), "--batch-size", "2", *common], tmp_path)

    def metrics(name):
        return [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    one, two = metrics("one"), metrics("two")
    assert [m["step"] for m in two] == [1, 2, 3, 4]  # one writer: no duplicated lines
    for key in ("loss", "rank", "kl", "margin", "reward_accuracy", "grad_norm"):
        assert [m[key] for m in two] == pytest.approx([m[key] for m in one], abs=1e-5), key
    assert len({round(m["loss"], 6) for m in one}) > 1
    from safetensors.torch import load_file

    w1, w2 = (load_file(str(tmp_path / n / "final" / "model.safetensors")) for n in ("one", "two"))
    assert w1.keys() == w2.keys()
    worst = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    print(f"2-process vs 1-process: max loss diff {max(abs(a['loss'] - b['loss']) for a, b in zip(one, two, strict=True)):.2e}, "
          f"max weight diff {worst:.2e}")
    assert worst < 1e-5
    base = load_file(str(tmp_path / "qwen2_vl" / "model.safetensors"))
    assert max(float((w1[k] - base[k]).abs().max()) for k in w1) > 1e-3  # the weights did move
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()) == ["step-000004"]
    assert torch.load(tmp_path / "two" / "checkpoints" / "step-000004" / "trainer_state.pt",
                      weights_only=False)["step"] == 4


def test_a_two_process_checkpoint_resumes_on_one_process(shared, tmp_path):
    """The checkpoint holds the full optimiser state and the position in the global batch order, so a run
    checkpointed under torchrun (2 x 2 pairs) continues on one process (1 x 4 pairs) as if uninterrupted."""
    shared("vqa_rad", "qa.jsonl")
    tok = load_project_tokenizer()
    shards = tmp_path / "shards"
    write_shard(iu_text_pairs(tok, limit=4), shards, "shard-00000.parquet")
    write_shard(vqa_image_pairs(tok, limit=4), shards, "shard-00001.parquet")
    model = build_tiny("llava", tmp_path / "llava")
    common = ["--shards", str(shards), "--model", str(model), "--steps", "4", "--lr", "5e-3", "--no-progress",
              "--save-every", "2", "--keep-checkpoints", "5"]
    run([str(BIN / "train-pairs"), "--out", str(tmp_path / "whole"), "--batch-size", "4", *common], tmp_path)
    run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(BIN / "train-pairs"),
         "--out", str(tmp_path / "moved"), "--batch-size", "2", *common], tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "moved" / "checkpoints" / "step-000004")  # as if it died after step 2
    run([str(BIN / "train-pairs"), "--out", str(tmp_path / "moved"), "--batch-size", "4", "--resume", *common],
        tmp_path)

    def losses(name):
        return [json.loads(line)["loss"] for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    assert len(losses("moved")) == 4
    assert losses("moved") == pytest.approx(losses("whole"), abs=1e-5)


ACCELERATE_FSDP = Path(__file__).resolve().parents[1] / "configs" / "accelerate" / "fsdp.yaml"


def test_fsdp_two_processes_with_accumulation_equal_one_process(shared, tmp_path):
    """FSDP2 (`fully_shard` per decoder layer, trainer/fsdp.py) launched by `accelerate launch` with the
    repo's configs/accelerate/fsdp.yaml, on the CPU with gloo: 2 processes x 1 pair x 2 accumulated
    micro-batches train exactly like one process with 4 pairs (losses, gradient norms and final weights to
    1e-5). Text-only and image pairs share batches, so in some micro-batches one process has no image or
    no corrupted image while the other has: the processes still run the same forwards (trainer/fsdp.py)."""
    common = [*mixed_qwen2_vl_run(shared, tmp_path), "--preset", "fire-mpo"]
    run([str(BIN / "train-pairs"), "--out", str(tmp_path / "one"), "--batch-size", "4", *common], tmp_path)
    run([str(BIN / "accelerate"), "launch", "--config_file", str(ACCELERATE_FSDP), str(BIN / "train-pairs"),
         "--out", str(tmp_path / "fsdp"), "--batch-size", "1", "--grad-accum", "2", *common], tmp_path)

    def metrics(name):
        return [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    one, two = metrics("one"), metrics("fsdp")
    assert [m["step"] for m in two] == [1, 2, 3, 4]  # one writer
    assert json.loads((tmp_path / "fsdp" / "train_config.json").read_text())["fsdp"] is True
    for key in ("loss", "rank", "kl", "margin", "reward_accuracy", "grad_norm"):
        assert [m[key] for m in two] == pytest.approx([m[key] for m in one], abs=1e-5), key
    assert len({round(m["loss"], 6) for m in one}) > 1
    from safetensors.torch import load_file

    w1, w2 = (load_file(str(tmp_path / n / "final" / "model.safetensors")) for n in ("one", "fsdp"))
    assert w1.keys() == w2.keys()  # gathered full weights, the one-process layout
    worst = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    print(f"FSDP 2 processes x 1 pair x 2 micro-batches vs 1 process x 4 pairs: max loss diff "
          f"{max(abs(a['loss'] - b['loss']) for a, b in zip(one, two, strict=True)):.2e}, max weight diff {worst:.2e}")
    assert worst < 1e-5
    state = torch.load(tmp_path / "fsdp" / "checkpoints" / "step-000004" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 4 and len(state["optimizer"]["state"]) == len(w1)  # full optimiser state, by index


def test_an_fsdp_checkpoint_resumes_on_another_world_size(shared, tmp_path):
    """A LoRA dpo run checkpointed under FSDP on 2 processes (gathered weights, optimiser state in the
    one-process layout) resumes under FSDP on 1 process and continues as the uninterrupted one-process run."""
    shared("vqa_rad", "qa.jsonl")
    tok = load_project_tokenizer()
    shards = tmp_path / "shards"
    write_shard(iu_text_pairs(tok, limit=4), shards, "shard-00000.parquet")
    write_shard(vqa_image_pairs(tok, limit=4), shards, "shard-00001.parquet")
    model = build_tiny("llava", tmp_path / "llava")
    common = ["--shards", str(shards), "--model", str(model), "--steps", "4", "--lr", "5e-3", "--no-progress",
              "--save-every", "2", "--keep-checkpoints", "5", "--preset", "dpo", "--lora"]
    run([str(BIN / "train-pairs"), "--out", str(tmp_path / "whole"), "--batch-size", "4", *common], tmp_path)
    run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(BIN / "train-pairs"), "--fsdp",
         "--out", str(tmp_path / "moved"), "--batch-size", "2", *common], tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "moved" / "checkpoints" / "step-000004")  # as if it died after step 2
    run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "1", str(BIN / "train-pairs"), "--fsdp",
         "--out", str(tmp_path / "moved"), "--batch-size", "4", "--resume", *common], tmp_path)

    def losses(name):
        return [json.loads(line)["loss"] for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    assert len(losses("moved")) == 4
    assert losses("moved") == pytest.approx(losses("whole"), abs=1e-5)
    assert len(set(losses("whole"))) > 1
    config = json.loads((tmp_path / "moved" / "train_config.json").read_text())
    assert config["fsdp"] and config["world_size"] == 1 and config["image_features_once"]  # LoRA: images once
