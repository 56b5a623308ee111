"""The `llm` editor end to end with the tiny random-weight model: its proposals are refused cleanly
(text outside the span changed, or verification failed), the rule editors take over, and the pair's
notes say why the model's proposal was not used."""

from __future__ import annotations

import pytest

from editors.registry import DEFAULT_EDITORS
from editors.text_pairs import TextPairError, TextPairMaker
from pipeline.config import LLMEditorConfig, TextConfig


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from models.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_llm_editor_refused_then_rules_fix(tiny_model, iu_generations):
    cfg = TextConfig(editors=["llm", *DEFAULT_EDITORS],
                     llm=LLMEditorConfig(model=str(tiny_model), max_new_tokens=24))
    maker = TextPairMaker(cfg)
    rules = TextPairMaker()

    def corrected(r):
        try:
            return rules.make(r["generated_report"], r["reference_report"], seed=0).on_policy == "rejected"
        except TextPairError:
            return False

    row = next(r for r in iu_generations if corrected(r))  # a real report the rule editors fix
    pair = maker.make(row["generated_report"], row["reference_report"], seed=0)
    assert pair.on_policy == "rejected"
    assert pair.notes["llm_refused"], "the random model's rewrite must be refused with a reason"
    assert "llm" not in pair.notes["editors"]
    ref = maker.reference_findings(row["reference_report"])
    assert not maker.analyse(pair.chosen, ref).keys - maker.analyse(pair.rejected, ref).keys


def test_llm_editor_needs_a_model():
    with pytest.raises(ValueError, match="text.llm.model"):
        TextPairMaker(TextConfig(editors=["llm"]))
