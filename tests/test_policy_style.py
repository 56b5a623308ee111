"""The on-policy style test with a real (tiny) policy: trained for a few steps on real model reports so
it knows their style, it accepts a sentence in that style and refuses one no report would contain."""

from __future__ import annotations

import pytest
import torch

from editors.policy_style import PolicyStyle
from editors.text_pairs import TextPairError, TextPairMaker


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory, iu_generations):
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    from models.tiny_model import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("policy") / "model")
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForImageTextToText.from_pretrained(str(path))
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    texts = [r["generated_report"] for r in iu_generations[:64]]
    model.train()
    for step in range(40):  # a few passes: the policy learns what its reports look like
        batch = tok(texts[(step * 8) % 64:(step * 8) % 64 + 8], return_tensors="pt", padding=True,
                    truncation=True, max_length=96)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(str(path))
    return path


def test_policy_scores_its_own_style_above_gibberish(policy_dir):
    style = PolicyStyle(policy_dir, margin=1.0)
    before = "the heart is normal in size . the lungs are clear . no pleural effusion or pneumothorax ."
    own = before + " there is no focal consolidation ."
    odd = before + " zebra quantum violin marmalade sprocket ."
    assert style.problems(before, own) == []
    found = style.problems(before, odd)
    assert found and "zebra" in found[0] and "nats/token" in found[0]


def test_text_stage_refuses_an_off_policy_edit(policy_dir):
    maker = TextPairMaker(style_model=str(policy_dir))
    maker.style.margin = 1.0
    response = "the heart is normal in size . the lungs are clear . no pleural effusion or pneumothorax ."
    # the reference's finding, written in words the policy never uses: refused, not paired (a nodule, not an
    # incidental finding such as a granuloma, whose omission is only recorded)
    reference = "Heart normal. No pleural effusion or pneumothorax. Zebra quantum violin nodule sprocket marmalade."
    with pytest.raises(TextPairError) as e:
        maker.make(response, reference)
    assert e.value.reason == "off_policy_style", e.value.detail
    plain = TextPairMaker()
    p = plain.make(response, reference)  # without a policy the same edit is a pair
    assert "zebra" in p.chosen
