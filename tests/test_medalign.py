"""MedAlign's terms on hand-built tensors: values worked out by hand, zeros where the structures agree."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.medalign import (
    attention_distillation_loss,
    cosine_matrix,
    resample_grid,
    similarity_structure_loss,
)


def test_resample_keeps_an_equal_grid_and_interpolates_a_coarser_one():
    x = torch.arange(8.0).reshape(4, 2)  # 2x2 grid, 2 channels
    assert torch.equal(resample_grid(x, (2, 2), (2, 2)), x)
    constant = torch.ones(9, 3) * 5
    torch.testing.assert_close(resample_grid(constant, (3, 3), (2, 4)), torch.ones(8, 3) * 5)
    # a 1x2 grid [0, 1] resampled to 1x4 (bilinear, half-pixel centres): 0, 0.25, 0.75, 1
    line = torch.tensor([[0.0], [1.0]])
    torch.testing.assert_close(resample_grid(line, (1, 2), (1, 4)).squeeze(-1), torch.tensor([0, 0.25, 0.75, 1.0]))


def test_similarity_loss_by_hand():
    # policy: two orthogonal tokens (cos 0); teacher: two parallel patches (cos 1) on the same 1x2 grid
    policy = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[1.0, 1.0, 0.0], [2.0, 2.0, 0.0]])
    # S_policy = [[1, 0], [0, 1]], S_teacher = all ones: mean of squared differences = (0 + 1 + 1 + 0) / 4
    assert float(similarity_structure_loss(policy, (1, 2), teacher, (1, 2))) == pytest.approx(0.5)
    assert float(similarity_structure_loss(teacher[:, :2], (1, 2), teacher, (1, 2))) == pytest.approx(0.0)


def test_zero_projection_starts_from_the_policy_geometry_and_learns():
    torch.manual_seed(0)
    policy = torch.randn(6, 4)
    teacher = torch.randn(4, 5)  # a 2x2 teacher grid resampled to the policy's 2x3
    projection = torch.zeros(4, 4, requires_grad=True)
    with_proj = similarity_structure_loss(policy, (2, 3), teacher, (2, 2), projection)
    without = similarity_structure_loss(policy, (2, 3), teacher, (2, 2))
    assert float(with_proj.detach()) == pytest.approx(float(without))
    with_proj.backward()
    assert projection.grad.abs().sum() > 0  # the projection is trained by this term
    with pytest.raises(ValueError, match="5 visual tokens for a 2x3 grid"):
        similarity_structure_loss(policy[:5], (2, 3), teacher, (2, 2))


def test_attention_distillation_is_kl_of_distributions():
    # policy: 2 heads, 1 question token, 2 image tokens; mean attention [0.25, 0.75]
    policy = torch.tensor([[[0.5, 0.5]], [[0.0, 1.0]]])
    teacher_same = torch.tensor([[0.25, 0.75]])
    assert float(attention_distillation_loss(policy, teacher_same, (1, 2), (1, 2))) == pytest.approx(0, abs=1e-7)
    teacher = torch.tensor([[1.0, 1.0]])  # uniform after normalisation
    want = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert float(attention_distillation_loss(policy, teacher, (1, 2), (1, 2))) == pytest.approx(want)
    # unnormalised inputs are normalised first: scaling either side changes nothing
    assert float(attention_distillation_loss(policy * 3, teacher * 7, (1, 2), (1, 2))) == pytest.approx(want)


def test_cosine_matrix_is_symmetric_with_unit_diagonal():
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    s = cosine_matrix(x)
    torch.testing.assert_close(s, s.T)
    torch.testing.assert_close(torch.diagonal(s), torch.ones(5))


def tiny_clip_teacher(out):
    """A tiny random CLIP vision model folder (the teacher), built offline."""
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=64, patch_size=16)
    CLIPVisionModel(config).save_pretrained(out)
    CLIPImageProcessorPil(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(out)
    return out


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
@pytest.mark.parametrize("preset", ["medalign", "fire-mpo+medalign"])
def test_medalign_presets_train_with_a_tiny_clip_teacher(family, preset, shared, tmp_path):
    import json

    from models.tiny import build_tiny
    from models.tiny_model import load_project_tokenizer
    from trainer.devdata import iu_text_pairs, two_view_pairs, vqa_image_pairs, write_shard
    from trainer.loop import TrainConfig, train

    shared("vqa_rad", "qa.jsonl")
    tok = load_project_tokenizer()
    shards = tmp_path / "shards"
    write_shard(iu_text_pairs(tok, limit=1), shards, "shard-00000.parquet")
    write_shard(vqa_image_pairs(tok, limit=2), shards, "shard-00001.parquet")
    write_shard(two_view_pairs(tok, limit=1), shards, "shard-00002.parquet")
    model = build_tiny(family, tmp_path / family)
    run = train(TrainConfig(shards=shards, out=tmp_path / "run", model=model, steps=3, batch_size=4, lr=5e-3,
                            preset=preset, teacher=tiny_clip_teacher(tmp_path / "clip"), progress=False))
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics]
    assert all(math.isfinite(v) for v in losses) and len(set(losses)) > 1
    assert all(m["sim"] > 0 and m["attn"] > 0 for m in metrics)
    state = torch.load(run / "checkpoints" / "step-000003" / "trainer_state.pt", weights_only=False)
    assert state["medalign"]["projection"].abs().sum() > 0  # the zero-initialised projection was trained


def test_medalign_preset_without_teacher_is_a_clear_error(shared, tmp_path):
    from models.tiny_model import load_project_tokenizer
    from trainer.devdata import vqa_image_pairs, write_shard
    from trainer.loop import TrainConfig, train

    shared("vqa_rad", "qa.jsonl")
    shards = write_shard(vqa_image_pairs(load_project_tokenizer(), limit=2), tmp_path / "s")
    with pytest.raises(ValueError, match="needs --teacher"):
        train(TrainConfig(shards=shards, out=tmp_path / "run", steps=1, preset="medalign", progress=False))
