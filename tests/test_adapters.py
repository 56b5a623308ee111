"""One matrix over every model adapter: a tiny random-weight model of each family, built here from its
config (models/tiny.py, nothing downloaded), trains with fire-mpo, dpo, LoRA and cached reference
log-probs on batches that mix 0, 1 and 2 images of different sizes (real IU X-ray text and VQA-RAD chest
images), and samples with the transformers sampler; the sampler and the trainer tokenise one prompt."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from models import ADAPTERS, AdapterError, get_adapter  # noqa: E402
from models.tiny import BUILDERS, build_tiny  # noqa: E402
from models.tiny_model import load_project_tokenizer  # noqa: E402
from trainer.data import PairEncoder, PairShards, collate_pairs  # noqa: E402
from trainer.devdata import iu_text_pairs, two_view_pairs, vqa_image_pairs, write_shard  # noqa: E402
from trainer.logps import chunked_logps, head_of, response_hidden  # noqa: E402
from trainer.loop import TrainConfig, train  # noqa: E402

FAMILIES = sorted(BUILDERS)
TEXT_ONLY = {"llama", "qwen2"}


@pytest.fixture(scope="module")
def tokenizer(shared):
    shared("vqa_rad", "qa.jsonl")
    shared("iu_xray_model_generations", "generations.jsonl")
    return load_project_tokenizer()


@pytest.fixture(scope="module")
def mixed_shards(tokenizer, tmp_path_factory):
    """2 text-only pairs, 2 one-image pairs, 2 two-image pairs (images of different sizes)."""
    out = tmp_path_factory.mktemp("mixed")
    write_shard(iu_text_pairs(tokenizer, limit=2), out, "shard-00000.parquet")
    write_shard(vqa_image_pairs(tokenizer, limit=2), out, "shard-00001.parquet")
    write_shard(two_view_pairs(tokenizer, limit=2), out, "shard-00002.parquet")
    return out


@pytest.fixture(scope="module")
def text_shards(tokenizer, tmp_path_factory):
    return write_shard(iu_text_pairs(tokenizer, limit=6), tmp_path_factory.mktemp("text"))


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-families")
    return {family: build_tiny(family, root / family) for family in FAMILIES}


def losses_of(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_every_family_has_an_adapter_and_unknown_types_list_the_valid_ones(tiny_models, tmp_path):
    for family, path in tiny_models.items():
        adapter = get_adapter(path)
        assert adapter.config["model_type"] == family and adapter.vision == (family not in TEXT_ONLY)
    assert {"qwen-vl", "llava", "idefics3", "gemma3", "paligemma", "causal-lm"} <= set(ADAPTERS)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    with pytest.raises(AdapterError, match="mamba.*qwen2_vl"):
        get_adapter(tmp_path)


@pytest.mark.parametrize("family", FAMILIES)
def test_mixed_batch_log_probs_equal_each_row_alone(family, tiny_models, mixed_shards, text_shards):
    """Padding and batching the extra inputs change nothing: a mixed batch scores each row as it would
    score alone, and prompt and image tokens never reach the labels."""
    adapter = get_adapter(tiny_models[family])
    model = adapter.load_model(torch.float32).eval()
    shards_dir = text_shards if family in TEXT_ONLY else mixed_shards
    shards = PairShards(shards_dir)
    encoder = PairEncoder(adapter, base_dir=shards_dir)
    pairs = [encoder(shards[i]) for i in range(len(shards))]
    batch = collate_pairs(pairs, adapter)
    rows = [(p, p.chosen_ids) for p in pairs] + [(p, p.rejected_ids) for p in pairs]
    for i, (_, resp) in enumerate(rows):
        assert batch.labels[i, : len(resp)].tolist() == resp  # labels are the response ids, nothing else
    with torch.no_grad():
        got = chunked_logps(head_of(model), response_hidden(model, batch), batch.labels, batch.response_mask,
                            chunk=7)
        for i, (pair, resp) in enumerate(rows):
            p = len(pair.prompt_ids)
            extra = adapter.collate([(pair.prompt_ids, pair.image_inputs, len(resp))], p + len(resp))
            logits = model(input_ids=torch.tensor([pair.prompt_ids + resp]), **extra).logits[0].float()
            alone = torch.log_softmax(logits[p - 1 : p + len(resp) - 1], -1).gather(
                -1, torch.tensor(resp).unsqueeze(-1)).squeeze(-1)
            torch.testing.assert_close(got[i, : len(resp)], alone, atol=1e-5, rtol=1e-5)
    if family not in TEXT_ONLY:
        assert sorted(len(shards[i]["images"]) for i in range(len(shards))) == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_trains_fire_mpo_dpo_lora_and_cache_ref(family, tiny_models, mixed_shards, text_shards,
                                                              tmp_path):
    shards = text_shards if family in TEXT_ONLY else mixed_shards
    model = tiny_models[family]
    runs = {}
    for name, kw in {"fire-mpo": dict(preset="fire-mpo"), "dpo-lora": dict(preset="dpo", lora=True, lora_r=4),
                     "mask-dpo": dict(preset="mask-dpo", grad_accum=2),
                     "mask-dpo-cached": dict(preset="mask-dpo", grad_accum=2, cache_ref=True)}.items():
        run = train(TrainConfig(shards=shards, out=tmp_path / name, model=model, steps=3, batch_size=3, lr=5e-3,
                                progress=False, **kw))
        runs[name] = losses_of(run)
        assert len(runs[name]) == 3 and all(math.isfinite(v) for v in runs[name]), (name, runs[name])
        assert len(set(runs[name])) > 1, f"{family} {name}: the loss never moved {runs[name]}"
    assert runs["mask-dpo-cached"] == pytest.approx(runs["mask-dpo"], abs=1e-6)
    if family not in TEXT_ONLY:
        metrics = [json.loads(x) for x in (tmp_path / "fire-mpo" / "metrics.jsonl").read_text().splitlines()]
        assert any(m["visual"] > 0 for m in metrics)  # pairs with corrupted images carry the visual term


@pytest.mark.parametrize("family", FAMILIES)
def test_sampler_and_trainer_tokenise_the_same_prompt_and_sampling_runs(family, tiny_models, mixed_shards,
                                                                         text_shards, tmp_path):
    """Prompt parity: the sampler's prompt for a sample is the trainer's prompt for its pair, token for
    token (no stray `<image>`, BOS exactly as the model expects), and the sampler answers with it."""
    from pipeline.samplers.transformers_sampler import TransformersSampler
    from schemas.sample import parse_sample
    from trainer.data import decode_images

    sampler = TransformersSampler(model=str(tiny_models[family]), max_new_tokens=4, temperature=0.9, top_p=0.9)
    shards_dir = text_shards if family in TEXT_ONLY else mixed_shards
    shards = PairShards(shards_dir)
    encoder = PairEncoder(get_adapter(tiny_models[family]), base_dir=shards_dir)
    samples = []
    for i in range(len(shards)):
        row = shards[i]
        images = decode_images(row["images"], shards_dir, row["pair_id"], "images")
        paths = []
        for k, image in enumerate(images):
            paths.append(str(tmp_path / f"{row['pair_id']}-{k}.png"))
            image.save(paths[-1])
        prompt = row["prompt"].replace("<image>", "").strip()
        sample = parse_sample({"sample_id": row["pair_id"], "task": "vqa", "prompt": prompt, "images": paths,
                               "reference": row["chosen"]})
        text = sampler.render(sample)
        ids, _ = sampler.adapter.encode_prompt(text, images)
        assert ids == encoder(row).prompt_ids, f"{family}: pair {row['pair_id']} prompt differs"
        assert "<image>" not in text or sampler.adapter.image_token == "<image>"
        if sampler.adapter.adds_bos:
            assert ids[0] == sampler.tokenizer.bos_token_id and ids[1] != sampler.tokenizer.bos_token_id
        samples.append(sample)
    out = sampler.sample(samples, 2, seed=1)
    assert [len(r) for r in out] == [2] * len(samples) and not sampler.errors
    assert sampler.sample(samples[-1:], 2, seed=1)[0] == out[-1]  # per-sample seeds hold for every family


def test_vision_model_without_image_processor_is_one_line_error_exit_2(tiny_models, mixed_shards, tmp_path):
    import shutil

    from trainer.cli import main

    broken = tmp_path / "qwen-no-processor"
    shutil.copytree(tiny_models["qwen2_vl"], broken)
    (broken / "preprocessor_config.json").unlink()
    with pytest.raises(AdapterError, match="preprocessor_config"):
        get_adapter(broken)
    assert main(["--shards", str(mixed_shards), "--out", str(tmp_path / "run"), "--model", str(broken),
                 "--steps", "1", "--no-progress"]) == 2


def test_text_only_model_rejects_image_pairs_by_name(tiny_models, mixed_shards):
    adapter = get_adapter(tiny_models["llama"])
    shards = PairShards(mixed_shards)
    row = next(shards[i] for i in range(len(shards)) if shards[i]["images"])
    with pytest.raises(ValueError, match=f"pair {row['pair_id']}: field 'images'"):
        PairEncoder(adapter, base_dir=mixed_shards)(row)
