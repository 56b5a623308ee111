"""Image features once (trainer/features.py): with a frozen vision tower (LoRA on the language model only,
the FiRe-MPO setup), each image of a step is encoded once and reused by the chosen and rejected rows and by
the reference, for the LLaVA and Qwen-VL families; the losses and gradients equal the plain path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from models.tiny import build_tiny  # noqa: E402
from models.tiny_model import load_project_tokenizer  # noqa: E402
from trainer.data import PairEncoder, PairShards, collate_pairs  # noqa: E402
from trainer.devdata import iu_text_pairs, two_view_pairs, vqa_image_pairs, write_shard  # noqa: E402
from trainer.features import SharedImageFeatures, shares_image_features  # noqa: E402
from trainer.logps import unwrap  # noqa: E402
from trainer.loop import TrainConfig, preference_step, train  # noqa: E402
from trainer.model import Reference, add_lora, load_policy  # noqa: E402
from trainer.presets import get_preset  # noqa: E402

pytest.importorskip("peft")
FAMILIES = ["llava", "qwen2_vl", "qwen3_vl"]  # qwen3_vl: deepstack features are reused too


@pytest.fixture(scope="module")
def mixed_shards(shared, tmp_path_factory):
    """2 text-only pairs, 2 one-image and 2 two-image pairs, the image pairs with corrupted images."""
    shared("vqa_rad", "qa.jsonl")
    shared("iu_xray_model_generations", "generations.jsonl")
    tok = load_project_tokenizer()
    out = tmp_path_factory.mktemp("mixed")
    write_shard(iu_text_pairs(tok, limit=2), out, "shard-00000.parquet")
    write_shard(vqa_image_pairs(tok, limit=2), out, "shard-00001.parquet")
    write_shard(two_view_pairs(tok, limit=2), out, "shard-00002.parquet")
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {f: build_tiny(f, root / f) for f in [*FAMILIES, "idefics3"]}


def lora_policy(model_dir: Path):
    torch.manual_seed(0)
    policy, adapter = load_policy(model_dir, torch.float32, torch.device("cpu"))
    policy = add_lora(policy, r=4)
    for name, p in policy.named_parameters():  # LoRA B starts at 0: move it so policy != reference
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    reference = Reference(policy)
    policy.train()
    return policy, adapter, reference


def count_images(family: str, tower: torch.nn.Module) -> list[int]:
    """Images each forward of the vision tower encodes (Qwen-VL: rows of grid_thw; LLaVA: the batch)."""
    seen: list[int] = []

    def hook(module, args, kwargs, out):
        if family.startswith("qwen"):
            grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
            seen.append(int(grid.shape[0]))
        else:
            seen.append(int(args[0].shape[0]))

    tower.register_forward_hook(hook, with_kwargs=True)
    return seen


@pytest.mark.parametrize("family", FAMILIES)
def test_features_once_equal_the_plain_path_and_encode_each_image_once(family, models, mixed_shards):
    policy, adapter, reference = lora_policy(models[family])
    assert shares_image_features(adapter, policy, reference)
    shards = PairShards(mixed_shards)
    encoder = PairEncoder(adapter, base_dir=mixed_shards)
    batch = collate_pairs([encoder(shards[i]) for i in range(len(shards))], adapter)
    n_images = sum(len(shards[i]["images"]) for i in range(len(shards)))  # 6: pairs with 0, 1, 2 images
    n_corrupt = n_images  # every image pair has corrupted images here
    body = unwrap(policy).model
    seen = count_images(family, getattr(body, "visual", None) or body.vision_tower)
    got = {}
    for mode in ("plain", "once"):
        seen.clear()
        policy.zero_grad(set_to_none=True)
        features = SharedImageFeatures(adapter) if mode == "once" else None
        losses, metrics = preference_step(policy, reference, batch, get_preset("fire-mpo"), features=features)
        losses.mean().backward()
        grads = {k: p.grad.clone() for k, p in policy.named_parameters() if p.grad is not None}
        got[mode] = (losses.detach(), grads, sum(seen), metrics)
    print(f"{family}: vision tower encodings per step {got['plain'][2]} plain, {got['once'][2]} once per image; "
          f"max loss diff {float((got['once'][0] - got['plain'][0]).abs().max()):.1e}")
    # plain: clean and corrupted images, each for chosen and rejected rows, policy and reference = 4x
    assert got["plain"][2] == 4 * (n_images + n_corrupt)
    assert got["once"][2] == n_images + n_corrupt  # once per image per step
    torch.testing.assert_close(got["once"][0], got["plain"][0], atol=1e-5, rtol=1e-5)
    assert got["once"][1].keys() == got["plain"][1].keys() and got["plain"][1]
    for k in got["plain"][1]:
        torch.testing.assert_close(got["once"][1][k], got["plain"][1][k], atol=1e-5, rtol=1e-5)
    assert got["plain"][3]["visual"] != 0 and got["once"][3] == pytest.approx(got["plain"][3], abs=1e-5)


def test_train_turns_it_on_for_lora_and_gives_the_plain_losses(models, mixed_shards, tmp_path):
    common = dict(shards=mixed_shards, model=models["llava"], steps=3, batch_size=3, lr=5e-3, progress=False,
                  preset="fire-mpo", lora=True, lora_r=4)
    once = train(TrainConfig(out=tmp_path / "once", **common))
    plain = train(TrainConfig(out=tmp_path / "plain", image_features_once=False, **common))

    def losses(run):
        return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]

    assert json.loads((once / "train_config.json").read_text())["image_features_once"] is True
    assert json.loads((plain / "train_config.json").read_text())["image_features_once"] is False
    assert losses(once) == pytest.approx(losses(plain), abs=1e-5) and len(set(losses(once))) > 1


def test_not_shared_when_the_vision_tower_trains_or_the_family_cannot_take_features(models):
    policy, adapter = load_policy(models["llava"], torch.float32, torch.device("cpu"))
    assert not shares_image_features(adapter, policy, Reference(policy))  # full fine-tuning: vision trains
    policy, adapter, reference = lora_policy(models["idefics3"])
    assert not adapter.encodes_images and not shares_image_features(adapter, policy, reference)


def test_asking_for_it_where_it_is_not_exact_is_an_error(models, mixed_shards, tmp_path):
    with pytest.raises(ValueError, match="image-features-once"):
        train(TrainConfig(shards=mixed_shards, out=tmp_path / "r", model=models["llava"], steps=1, batch_size=2,
                          progress=False, image_features_once=True))
