"""One contract over every registered editor, on errors found in real model reports:
a proposal stays inside the text, its edits do not overlap, applying it changes nothing
outside its spans, and every sentence it touches passes the fluency checker."""

from __future__ import annotations

import pytest

from clinical.fluency import edit_problems
from editors.apply import apply_edits, normalize
from editors.base import EditContext
from editors.registry import EDITORS, get_editor
from editors.text_pairs import TextPairMaker

# Real report sentences recombined so every error type occurs (the IU generations have no severity error).
_EXTRA = [
    ("there is a large right pleural effusion . no pneumothorax .", "Small right pleural effusion. No pneumothorax."),
    ("mild cardiomegaly . the lungs are clear .", "Moderate cardiomegaly. Lungs are clear."),
    ("there is a small left pleural effusion . no pneumothorax .", "Small right pleural effusion. No pneumothorax."),
]


@pytest.fixture(scope="module")
def cases(iu_generations):
    maker = TextPairMaker()
    out = []
    rows = [(r["generated_report"], r["reference_report"]) for r in iu_generations] + _EXTRA
    for resp, reference in rows:
        ref = maker.reference_findings(reference)
        an = maker.analyse(resp, ref)
        ctx = EditContext.build(resp, an.findings, reference, ref, maker.lexicon)
        out.extend((err, ctx) for err in an.errors)
    return out


@pytest.fixture(scope="module")
def llm_config(tmp_path_factory):
    from models.tiny_model import build_tiny_model
    from pipeline.config import LLMEditorConfig, TextConfig

    model = build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")
    return TextConfig(llm=LLMEditorConfig(model=str(model), max_new_tokens=16))


@pytest.mark.parametrize("name", sorted(EDITORS))
def test_editor_contract(name, cases, request):
    editor = get_editor(name, request.getfixturevalue("llm_config") if name == "llm" else None)
    proposals = 0
    if name == "llm":
        cases = cases[:6]  # a model call per case; the tiny random model's rewrites are refused
    for err, ctx in cases:
        if err.error_type not in editor.error_types:
            continue
        prop = editor.propose(err, ctx)
        if not prop:
            continue
        proposals += 1
        assert normalize(prop) == sorted(prop, key=lambda e: (e.start, e.end))
        for ed in prop:
            assert 0 <= ed.start <= ed.end <= len(ctx.text)
            assert ed.error_type == err.error_type
        new = apply_edits(ctx.text, prop)
        # outside the edits, the text is the original, byte for byte
        first, last = prop[0], prop[-1]
        assert new[: first.start] == ctx.text[: first.start]
        tail = len(ctx.text) - last.end
        assert new[len(new) - tail :] == ctx.text[last.end :] if tail else True
        if name != "llm":
            # every sentence a proposal writes or leaves behind reads as report text
            assert not edit_problems(ctx.text, new), (name, ctx.text, new)
    if name == "llm":
        assert proposals + len(editor.refusals) > 0 and all(":" in r for r in editor.refusals)
    else:
        assert proposals > 0, f"editor {name} proposed nothing on real data"


def test_unknown_editor_lists_valid_names():
    with pytest.raises(ValueError) as e:
        get_editor("rewrite-everything")
    assert "valid editors" in str(e.value) and "deletion" in str(e.value)
