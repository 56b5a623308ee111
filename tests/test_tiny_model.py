"""models/tiny_model.py: a tiny LLaVA that loads through the Auto classes, offline, with the project tokenizer."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from data_paths import SHARED as DATA  # noqa: E402 - the full shared data, else the committed excerpts
from transformers import AutoModelForImageTextToText, AutoProcessor  # noqa: E402

from models.tiny_model import IMAGE_TOKENS, TOKENIZER_DIR, build_tiny_model, load_project_tokenizer  # noqa: E402

XRAY = DATA / "nih_cxr14_txv_test_images" / "images" / "00000001_000.png"
IU = DATA / "iu_xray_model_generations" / "generations.jsonl"

pytestmark = pytest.mark.skipif(not (TOKENIZER_DIR / "tokenizer.json").is_file(),
                                reason="medpref_data/tokenizer not built (scripts/build_tokenizer.py)")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


def test_loads_with_auto_classes_and_shares_the_project_tokenizer(tiny):
    model = AutoModelForImageTextToText.from_pretrained(tiny)
    processor = AutoProcessor.from_pretrained(tiny)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert type(processor.image_processor).__name__ == "CLIPImageProcessorPil"
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    if not IU.is_file():
        pytest.skip(f"{IU} absent")
    import json

    report = json.loads(IU.open().readline())["generated_report"]
    project = load_project_tokenizer()
    assert processor.tokenizer(report, add_special_tokens=False).input_ids == project(
        report, add_special_tokens=False).input_ids
    assert model.config.image_token_id == project.image_token_id
    assert model.config.text_config.vocab_size == len(project)


def test_image_tokens_match_vision_features_on_a_real_xray(tiny):
    if not XRAY.is_file():
        pytest.skip(f"{XRAY} absent")
    from PIL import Image

    model = AutoModelForImageTextToText.from_pretrained(tiny)
    processor = AutoProcessor.from_pretrained(tiny)
    image = Image.open(XRAY)  # 1024 px grayscale
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the findings."}]}],
        tokenize=False, add_generation_prompt=True)
    enc = processor(text=[text], images=[image], return_tensors="pt", add_special_tokens=False)
    n_image_tokens = int((enc.input_ids == model.config.image_token_id).sum())
    assert n_image_tokens == IMAGE_TOKENS == 49
    assert tuple(enc.pixel_values.shape) == (1, 3, 224, 224)
    with torch.no_grad():
        feats = model.get_image_features(pixel_values=enc.pixel_values)
        feats = feats.pooler_output if hasattr(feats, "pooler_output") else feats
        feats = torch.cat(list(feats)) if isinstance(feats, (list, tuple)) else feats
        assert feats.reshape(-1, feats.shape[-1]).shape[0] == n_image_tokens
        out = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == enc.input_ids.shape[1] + 4


def test_same_seed_same_weights_other_seed_differs(tiny, tmp_path):
    again = build_tiny_model(tmp_path / "again", seed=0)
    other = build_tiny_model(tmp_path / "other", seed=1)
    a, b, c = (AutoModelForImageTextToText.from_pretrained(p).state_dict() for p in (tiny, again, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
