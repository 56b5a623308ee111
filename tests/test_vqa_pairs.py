"""VQA pairs on real VQA-RAD and SLAKE questions: a wrong answer is replaced inside the response's own
wording, a right one gets the opposite (or a plausible wrong value) injected, every pair is verified,
text outside the edit is byte-identical, and what cannot be handled is a reject with a reason."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corruptors.anatomy import validate_location
from editors.text_pairs import TextPair, TextPairError, TextPairMaker
from editors.vqa import normalize_answer, same_answer, yes_no_of
from editors.vqa_pairs import make_vqa_pair

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _load(*parts: str) -> list[dict]:
    path = DATA.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"shared data not found: {path}")
    return [json.loads(line) for line in path.open()]


@pytest.fixture(scope="module")
def rad() -> list[dict]:
    return _load("vqa_rad", "qa.jsonl")


@pytest.fixture(scope="module")
def slake() -> list[dict]:
    return _load("vqa_slake_qa", "qa.jsonl")


def _question(rows: list[dict], text: str) -> dict:
    """The first row asking exactly ``text`` (so a test names the real question it uses)."""
    for r in rows:
        if r["question"].strip() == text:
            return r
    pytest.skip(f"question not in the shared data: {text!r}")


def _rebuilt(pair: TextPair) -> str:
    """``rejected`` with each edit's ``after`` put in place of its ``before``: must equal ``chosen``
    when nothing outside the edits changed (checked independently of the code under test)."""
    out, pos = [], 0
    for e in sorted(pair.edits, key=lambda e: e.rejected_start):
        assert pair.rejected[e.rejected_start : e.rejected_end] == e.before
        assert pair.chosen[e.chosen_start : e.chosen_end] == e.after
        out += [pair.rejected[pos : e.rejected_start], e.after]
        pos = e.rejected_end
    return "".join(out) + pair.rejected[pos:]


def _check(pair: TextPair) -> None:
    assert pair.error_types == ["wrong_answer"]
    assert pair.edits and all(e.error_type == "wrong_answer" for e in pair.edits)
    assert pair.chosen != pair.rejected
    assert _rebuilt(pair) == pair.chosen
    for loc in pair.locations:
        validate_location(loc)


# ------------------------------------------------------------------------------ normalisation


@pytest.mark.parametrize("variants", [
    ["Right-sided pleural effusions.", "right pleural effusion", "The right sided pleural effusion"],
    ["two", "2", "Two."],
    ["X-ray", "xray", "X ray", "radiograph"],
    ["transverse  plane", "Axial", "axial plane"],
    ["Hypo-dense", "hypodense", "hypo dense"],
    ["MR", "MRI", "magnetic resonance imaging"],
    ["T2 weighted", "T2", "t2-weighted"],
])
def test_normalisation_makes_variants_equal(variants):
    assert len({normalize_answer(v) for v in variants}) == 1, [normalize_answer(v) for v in variants]


def test_word_order_does_not_matter():
    assert same_answer("right lobe of the liver", "Right hepatic lobe")
    assert same_answer("lower left lobe", "Left lower lobe")
    assert not same_answer("left lower lobe", "left upper lobe")


@pytest.mark.parametrize("a,b", [("left lung", "right lung"), ("CT", "MRI"), ("axial", "coronal"),
                                 ("2", "3"), ("upper lobe", "lower lobe")])
def test_normalisation_keeps_different_answers_apart(a, b):
    assert normalize_answer(a) != normalize_answer(b)


@pytest.mark.parametrize("answer,expected", [("Yes", "yes"), ("yes.", "yes"), ("No", "no"), ("no evidence", "no"),
                                             ("Not seen", "no"), ("Not seen here", "no"), ("None", "no"),
                                             ("Left", None), ("5 cm", None)])
def test_yes_no_variants(answer, expected):
    assert yes_no_of(answer) == expected


# ------------------------------------------------------------------------------- yes / no


def _is_there_questions(rows: list[dict]) -> list[tuple[dict, str, str]]:
    """Real "Is there a X?" / "Are there X?" questions with yes/no gold, and the two answers a model
    would write: "Yes, there is a X." and "No, there is no X."."""
    out = []
    for r in rows:
        m = re.fullmatch(r"\s*(is|are) there (a|an|any) ([a-z][a-z \-]*[a-z])\s*\??\s*", r["question"], re.I)
        if not m or yes_no_of(str(r["answer"])) is None:
            continue
        aux, art, x = m.group(1).lower(), m.group(2).lower(), m.group(3)
        if x[0].islower() and (art == "an") != (x[0] in "aeiou"):
            continue  # "an brain bleed", "a unified": the article is not the simple rule's; left out
        art = ("an " if x[0] in "aeiou" else "a ") if art == "any" else art + " "
        art = art if aux == "is" else ""
        out.append((r, f"Yes, there {aux} {art}{x}.", f"No, there {aux} no {x}."))
    return out


def test_wrong_yes_no_is_flipped_in_the_responses_wording(rad, slake):
    cases = _is_there_questions(rad + [r for r in slake if r["q_lang"] == "en"])
    assert len(cases) > 100
    for r, yes, no in cases:
        gold = yes_no_of(str(r["answer"]))
        wrong, right = (no, yes) if gold == "yes" else (yes, no)
        pair = make_vqa_pair(wrong, str(r["answer"]), r["question"], seed=r["qid"])
        _check(pair)
        assert (pair.on_policy, pair.rejected, pair.chosen) == ("rejected", wrong, right), r["question"]
        # only the answer words changed: the yes/no token and the article/negation after "there is"
        assert {e.before.lower() for e in pair.edits} <= {"yes", "no", "a", "an", ""}


def test_right_yes_no_gets_the_opposite_injected(rad, slake):
    for r, yes, no in _is_there_questions(rad + [r for r in slake if r["q_lang"] == "en"]):
        gold = yes_no_of(str(r["answer"]))
        right, wrong = (yes, no) if gold == "yes" else (no, yes)
        pair = make_vqa_pair(right, str(r["answer"]), r["question"], seed=r["qid"])
        _check(pair)
        assert (pair.on_policy, pair.chosen, pair.rejected) == ("chosen", right, wrong), r["question"]


@pytest.mark.parametrize("question,response,injected,fixed_back", [
    # negation cues without a leading yes/no ("no evidence", "not seen")
    ("Is there evidence of a pneumothorax", "There is no evidence of pneumothorax.",
     "There is evidence of pneumothorax.", None),
    ("Is there evidence of a pneumothorax", "Pneumothorax is not seen on this film.",
     "Pneumothorax is seen on this film.", None),
    ("Is there evidence of a pneumothorax", "No.", "Yes.", None),
    # an antonym of the question's word answers "no"; fixing "normal" negates it
    ("Are the lungs normal appearing?", "The lungs appear abnormal.", "The lungs appear normal.",
     "The lungs do not appear normal."),
    # naming another modality than the one asked about answers "no"
    ("Is this a MRI of the chest?", "This is a CT scan of the chest.", "This is an MRI scan of the chest.",
     "This is not an MRI scan of the chest."),
])
def test_yes_no_variants_on_real_questions(rad, question, response, injected, fixed_back):
    r = _question(rad, question)
    right = make_vqa_pair(response, r["answer"], question, seed=1)  # the response agrees with the gold
    _check(right)
    assert (right.on_policy, right.chosen, right.rejected) == ("chosen", response, injected)
    wrong = make_vqa_pair(injected, r["answer"], question, seed=1)  # the wrong one is fixed
    _check(wrong)
    assert (wrong.on_policy, wrong.chosen, wrong.rejected) == ("rejected", fixed_back or response, injected)
    assert wrong.notes["response_answer"] != yes_no_of(r["answer"])


def test_yes_no_flip_keeps_the_sentence_coherent(rad):
    r = _question(rad, "Is there evidence of a pneumothorax")  # gold: No
    pair = make_vqa_pair("Yes, there is a small pneumothorax at the right apex.", r["answer"], r["question"], 3)
    assert pair.chosen == "No, there is no small pneumothorax at the right apex."
    r = _question(rad, "Are the lungs normal appearing?")  # gold: No
    pair = make_vqa_pair("Yes, the lungs are normal.", r["answer"], r["question"], 3)
    assert pair.chosen == "No, the lungs are not normal."


def test_a_normal_statement_is_an_answer_place_only_for_its_organ(rad):
    """"the lungs are clear" says nothing about a pneumothorax (pleura): only the wrong "Yes" changes. It
    answers "no" to a question about tuberculosis (the issue's TBX11K case, whose gold is a sentence): the
    clause that cannot say "yes" is removed at the clause level."""
    r = _question(rad, "Is there evidence of a pneumothorax")  # gold: No
    pair = make_vqa_pair("Yes, the lungs are clear.", r["answer"], r["question"], 1)
    assert (pair.rejected, pair.chosen) == ("Yes, the lungs are clear.", "No, the lungs are clear.")
    pair = make_vqa_pair("No, the lungs are clear.", "Yes, there are tuberculosis lesions in both upper lungs.",
                         "Is there evidence of pulmonary tuberculosis?", 1)
    assert (pair.rejected, pair.chosen, pair.on_policy) == ("No, the lungs are clear.", "Yes.", "rejected")


# ------------------------------------------------------------------------------ open answers


def _swap_side(text: str) -> str | None:
    words = re.findall(r"\b(left|right)\b", text, re.I)
    if len(words) != 1:
        return None
    return re.sub(r"\b(left|right)\b", lambda m: {"left": "right", "right": "left"}[m.group().lower()], text,
                  flags=re.I)


def test_wrong_laterality_is_fixed_and_right_laterality_swapped(rad):
    rows = [r for r in rad if yes_no_of(str(r["answer"])) is None and _swap_side(str(r["answer"]))]
    assert len(rows) > 100
    fixed = injected = 0
    for r in rows:
        gold = str(r["answer"]).strip().rstrip(".").lower()
        right = f"It is located in the {gold}."
        wrong = f"It is located in the {_swap_side(gold)}."
        try:
            pair = make_vqa_pair(wrong, r["answer"], r["question"], seed=r["qid"])
        except TextPairError as e:
            pytest.fail(f"{r['question']!r} / {r['answer']!r}: {e}")
        _check(pair)
        assert pair.on_policy == "rejected" and pair.rejected == wrong
        fixed += pair.chosen == right
        pair = make_vqa_pair(right, r["answer"], r["question"], seed=r["qid"])
        _check(pair)
        assert pair.on_policy == "chosen" and pair.chosen == right
        injected += pair.rejected == wrong
    # the laterality word is the edit: chosen / rejected are the other template exactly
    assert fixed >= 0.95 * len(rows) and injected >= 0.95 * len(rows), (fixed, injected, len(rows))


_KIND = {"ct": "MRI", "mri": "CT", "xray": "CT", "axial": "coronal", "coronal": "axial", "sagittal": "axial",
         "pa": "AP", "ap": "PA"}


def test_modality_and_plane_answers(rad, slake):
    rows = [r for r in rad + [r for r in slake if r["q_lang"] == "en"]
            if r["answer_type"] == "OPEN" and normalize_answer(str(r["answer"])) in _KIND]
    assert len(rows) > 100
    for r in rows:
        wrong = f"This image is a {_KIND[normalize_answer(r['answer'])]} image."
        pair = make_vqa_pair(wrong, r["answer"], r["question"], seed=r["qid"])
        _check(pair)
        assert pair.on_policy == "rejected" and pair.rejected == wrong
        assert normalize_answer(pair.edits[0].after) == normalize_answer(r["answer"])
        # injection into the chosen side gives back a different value of the same kind
        back = make_vqa_pair(pair.chosen, r["answer"], r["question"], seed=r["qid"])
        _check(back)
        assert back.on_policy == "chosen"
        assert normalize_answer(back.edits[0].before) in _KIND
        assert normalize_answer(back.edits[0].before) != normalize_answer(r["answer"])


@pytest.mark.parametrize("question,wrong,right", [
    ("Is this a solid or cystic lesion?", "This is a cystic lesion.", "This is a solid lesion."),
    ("Is the mass hyperintense or hypointense?", "The mass looks hypointense.", "The mass looks hyperintense."),
    ("Is this an abscess or cancer?", "This looks like cancer.", "This looks like abscess."),
    ("Which organ is abnormal, heart or lung?", "The heart is abnormal.", "The lung is abnormal."),
])
def test_choice_questions_use_the_other_option(rad, slake, question, wrong, right):
    r = _question(rad + slake, question)
    if normalize_answer(r["answer"]) not in normalize_answer(right):
        wrong, right = right, wrong  # this row's gold is the other option
    pair = make_vqa_pair(wrong, r["answer"], question, seed=1)
    _check(pair)
    assert (pair.on_policy, pair.chosen) == ("rejected", right)
    pair = make_vqa_pair(right, r["answer"], question, seed=1)
    _check(pair)
    assert (pair.on_policy, pair.rejected) == ("chosen", wrong)


def test_counts_keep_the_responses_number_style(rad):
    words = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five"}
    rows = [r for r in rad if r["question"].lower().startswith("how many") and str(r["answer"]) in list(words)[:-1]]
    assert rows
    for r in rows:
        n = str(r["answer"])
        pair = make_vqa_pair(f"I count {words[str(int(n) + 1)]} in total.", n, r["question"], seed=1)
        _check(pair)
        assert pair.chosen == f"I count {words[n]} in total."
        pair = make_vqa_pair(f"I count {n} in total.", n, r["question"], seed=1)
        _check(pair)
        assert pair.on_policy == "chosen" and pair.rejected == f"I count {int(n) + 1} in total."


def test_open_answer_replaced_in_a_sentence(rad):
    r = _question(rad, "What is in the right upper quadrant?")  # gold: Gallstones
    pair = make_vqa_pair("The image shows a large mass in the right upper quadrant.", r["answer"], r["question"], 1)
    _check(pair)
    assert pair.on_policy == "rejected"
    assert normalize_answer(r["answer"]) in normalize_answer(pair.chosen)
    assert pair.chosen.startswith("The image shows ") and pair.chosen.endswith(" in the right upper quadrant.")


def test_candidates_give_a_plausible_wrong_answer(slake):
    """SLAKE knowledge questions have no small table of alternatives: another gold answer of the same
    content type is injected instead."""
    en = [r for r in slake if r["q_lang"] == "en" and r["content_type"] == "KG" and r["answer_type"] == "OPEN"]
    pool = sorted({r["answer"] for r in en})
    pooled = {normalize_answer(p) for p in pool}
    made = from_pool = 0
    for r in en[:120]:
        response = f"The answer is {r['answer']}."
        try:
            pair = make_vqa_pair(response, r["answer"], r["question"], seed=r["qid"], candidates=pool)
        except TextPairError as e:
            assert e.reason == "no_error", e
            continue
        _check(pair)
        made += 1
        assert pair.on_policy == "chosen" and pair.chosen == response
        assert not same_answer(pair.edits[0].before, r["answer"])
        from_pool += normalize_answer(pair.edits[0].before) in pooled
    # most come from the pool ("Chest" gets "abdomen" from the table of body regions first)
    assert made >= 100 and from_pool >= 80, (made, from_pool)


def test_without_candidates_an_unknown_kind_of_answer_is_no_error(rad):
    r = _question(rad, "What is in the right upper quadrant?")
    with pytest.raises(TextPairError) as e:
        make_vqa_pair("Gallstones.", r["answer"], r["question"], 1)
    assert e.value.reason == "no_error"


# ------------------------------------------------------------------------------ rejects


def test_chinese_slake_questions_are_rejected_with_unsupported_language(slake):
    zh = [r for r in slake if r["q_lang"] == "zh"]
    assert len(zh) > 1000
    for r in zh:
        with pytest.raises(TextPairError) as e:
            make_vqa_pair("Yes.", r["answer"], r["question"], 0)
        assert e.value.reason == "unsupported_language"
    # the English question about the same image is not a language reject
    en = next(r for r in slake if r["q_lang"] == "en" and r["img_id"] == zh[0]["img_id"])
    try:
        make_vqa_pair(f"The answer is {en['answer']}.", en["answer"], en["question"], 0)
    except TextPairError as e:
        assert e.reason != "unsupported_language"


@pytest.mark.parametrize("response,reason", [
    ("", "empty_response"), ("   ", "empty_response"),
    ("It cannot be determined from this image.", "ambiguous_answer"),
    ("这是一张胸片", "unsupported_language"),
])
def test_rejects_with_reasons(rad, response, reason):
    r = _question(rad, "Is there evidence of a pneumothorax")
    with pytest.raises(TextPairError) as e:
        make_vqa_pair(response, r["answer"], r["question"], 0)
    assert e.value.reason == reason


# ------------------------------------------------------------------------------ locations, wiring


def test_locations_name_the_chest_anatomy(rad):
    r = _question(rad, "Is there free air under the left diaphragm?")
    pair = make_vqa_pair("Yes, there is free air under the left diaphragm.", r["answer"], r["question"], 0)
    assert pair.locations == [{"laterality": "left", "zone": None, "diseased_sides": []}]
    r = next(r for r in rad if str(r["answer"]).lower() == "right upper lobe")
    pair = make_vqa_pair("It is in the left upper lobe.", r["answer"], r["question"], 0)
    assert pair.locations == [{"laterality": "right", "zone": "upper", "diseased_sides": []}]
    r = next(r for r in rad if str(r["answer"]).lower() == "right temporal lobe")  # not the chest
    pair = make_vqa_pair("It is in the left temporal lobe.", r["answer"], r["question"], 0)
    assert pair.locations == []


def test_text_pair_maker_routes_vqa(rad):
    r = _question(rad, "Is there evidence of a pneumothorax")
    pair = TextPairMaker().make("Yes, there is a pneumothorax.", r["answer"], "vqa", prompt=r["question"], seed=5)
    assert (pair.on_policy, pair.chosen) == ("rejected", "No, there is no pneumothorax.")


# ------------------------------------------------------------------------------ property


_SENTENCES = st.sampled_from([
    "The heart size is normal.", "No acute fracture.", "Degenerative changes of the spine.",
    "There is a left rib fracture.", "Lungs are clear.", "Small right pleural effusion.", "5.6 cm mass.",
    "Follow-up is recommended",
])  # none of them answers the questions below (an answer in a later sentence is edited too: see above)
_JUNK = st.text(alphabet=st.sampled_from(list("abxyz LR,.;:!?-'0123456789\n")), max_size=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tail=st.lists(st.one_of(_SENTENCES, _JUNK), max_size=4), sep=st.sampled_from([" ", "\n", "  "]),
       case=st.integers(0, 3))
def test_text_outside_the_edit_is_identical(tail, sep, case):
    """Whatever follows the answer sentence, the pair is made, its edits lie inside the answer sentence,
    and outside them chosen and rejected are the same bytes."""
    question, gold, head = [
        ("Is there evidence of a pneumothorax", "No", "Yes, there is a pneumothorax."),
        ("Is there evidence of a pneumothorax", "Yes", "Yes, there is a pneumothorax."),
        ("Where is the abnormality?", "Left lower lobe", "The abnormality is in the right lower lobe."),
        ("Where is the abnormality?", "Right lower lobe", "The abnormality is in the right lower lobe."),
    ][case]
    response = head + sep + sep.join(tail)
    pair = make_vqa_pair(response, gold, question, seed=len(response))
    _check(pair)
    assert response == (pair.rejected if pair.on_policy == "rejected" else pair.chosen)
    ends = [e.rejected_end if pair.on_policy == "rejected" else e.chosen_end for e in pair.edits]
    assert max(ends) <= len(head)
    other = pair.chosen if pair.on_policy == "rejected" else pair.rejected
    assert other.endswith(response[len(head) :])


def test_importer_candidates_let_right_open_answers_get_a_wrong_one(shared):
    """VQA-RAD's own answers to the same kind of question are the plausible wrong answers."""
    from editors.text_pairs import TextPairError, TextPairMaker
    from pipeline.importers import import_samples

    records = [r for r in import_samples("vqa-rad", shared("vqa_rad")) if r["meta"].get("answer_type") == "open"]
    assert records and all(r["reference"].lower() not in r["meta"]["answer_candidates"] for r in records)
    maker = TextPairMaker()
    with_c = without = 0
    for r in records[:150]:
        for cands in (r["meta"]["answer_candidates"], None):
            try:
                p = maker.make(r["reference"], r["reference"], "vqa", r["prompt"], seed=1, candidates=cands)
            except TextPairError:
                continue
            assert p.on_policy == "chosen" and p.error_types == ["wrong_answer"]
            with_c, without = with_c + (cands is not None), without + (cands is None)
    assert with_c > without


def test_answer_is_yes_style(shared):
    from editors.vqa_pairs import make_vqa_pair

    p = make_vqa_pair("The answer is no.", "Yes", "Is there a pleural effusion?", 0)
    assert (p.rejected, p.chosen, p.on_policy) == ("The answer is no.", "The answer is yes.", "rejected")
