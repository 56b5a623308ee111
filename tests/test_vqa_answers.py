"""VQA answers written the way chat models write them (issue 11), on the committed fixture of real
VQA-RAD and SLAKE questions: every place an answer is given states the gold in chosen, judged by the
independent checker of ``report/vqa_consistency.py``; golds given as sentences are read for their
answer; open answers are normalised as clinicians write them."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from editors.text_pairs import TextPairError
from editors.vqa import Gold, normalize_answer, read_yes_no, same_answer
from editors.vqa_pairs import make_vqa_pair
from report.vqa_consistency import fluent, gives_open, judge_yes_no
from report.vqa_suite import claims, closed_items, open_items

FIXTURE = Path(__file__).parent / "fixtures" / "vqa" / "qa.jsonl"
ROWS = [json.loads(line) for line in FIXTURE.open()]
CLOSED = [r for r in ROWS if str(r["answer"]).lower() in ("yes", "no")]
OPEN = [r for r in ROWS if str(r["answer"]).lower() not in ("yes", "no")]
TB_Q = "Is there evidence of pulmonary tuberculosis?"
TB_GOLD = "Yes, there are tuberculosis lesions in both upper lungs."


def _rebuilt(pair) -> str:
    out, pos = [], 0
    for e in sorted(pair.edits, key=lambda e: e.rejected_start):
        out += [pair.rejected[pos : e.rejected_start], e.after]
        pos = e.rejected_end
    return "".join(out) + pair.rejected[pos:]


def test_fixture_is_real_and_mixed():
    assert len(ROWS) >= 40 and len(CLOSED) >= 20 and len(OPEN) >= 20
    assert {r["dataset"] for r in ROWS} == {"vqa_rad", "slake"}


# ------------------------------------------------------------------------- the examples


@pytest.mark.parametrize("question,gold,response,chosen", [
    # each of these was half-fixed before: one place edited, the other left
    ("Is there a mass in the right hilum?", "No", "Yes. There is a mass in the right hilum.",
     "No. There is no mass in the right hilum."),
    ("Are there calcified lesions in the lung fields?", "Yes",
     "Based on the chest X-ray, no, there are no calcified lesions in the patient's lung fields.",
     "Based on the chest X-ray, yes, there are calcified lesions in the patient's lung fields."),
    ("Is the heart abnormal?", "Yes", "No. The heart is not abnormal.", "Yes. The heart is abnormal."),
    ("Is this film properly exposed?", "No", "Based on the chest X-ray, yes, this film is properly exposed.",
     "Based on the chest X-ray, no, this film is not properly exposed."),
    ("Is there a pleural effusion?", "Yes", "No, based on the image.", "Yes, based on the image."),
    ("Is there a pleural effusion?", "Yes", "The answer is no.", "The answer is yes."),
    # an explanation that contradicts the gold is removed at the clause level
    (TB_Q, TB_GOLD, "No, the lungs are clear.", "Yes."),
    (TB_Q, TB_GOLD, "No, the lungs are clear and there is no cavitation.", "Yes, there is no cavitation."),
    (TB_Q, TB_GOLD, "No, there is no evidence of tuberculosis. The lungs are clear.",
     "Yes, there is evidence of tuberculosis."),
    ("Is the heart enlarged?", "No", "Yes, the heart is enlarged, consistent with cardiomegaly.",
     "No, the heart is not enlarged."),
    # no yes/no word at all
    ("Is there a pneumothorax?", "Yes", "No, I do not see any pneumothorax.", "Yes, I see a pneumothorax."),
    # the phrase that backed the wrong answer goes with it
    ("Are the lungs normal?", "No", "Yes, the lungs appear normal with no signs of consolidation or effusion.",
     "No, the lungs do not appear normal."),
])
def test_every_place_states_the_gold(question, gold, response, chosen):
    pair = make_vqa_pair(response, gold, question, seed=0)
    assert (pair.on_policy, pair.rejected, pair.chosen) == ("rejected", response, chosen)
    assert _rebuilt(pair) == pair.chosen
    want = "yes" if gold.lower().startswith("yes") else "no"
    verdict = judge_yes_no(pair.chosen, question)
    assert verdict.states(want) and not verdict.contradicts_itself, verdict


def test_the_judge_catches_half_fixed_answers():
    """The checker is not a rubber stamp: the issue's half-fixed chosen sides contradict themselves."""
    for question, text in [("Is there a mass in the right hilum?", "No. There is a mass in the right hilum."),
                           ("Is the heart abnormal?", "Yes. The heart is not abnormal."),
                           ("Are there calcified lesions in the lung fields?",
                            "Based on the chest X-ray, yes, there is no calcified lesions in the lung fields."),
                           (TB_Q, "Yes, the lungs are clear.")]:
        assert judge_yes_no(text, question).contradicts_itself, text


def test_the_judge_shares_no_code_with_the_editors():
    source = (Path(__file__).parents[1] / "report" / "vqa_consistency.py").read_text()
    imported = [n.module or "" for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.startswith(("editors", "clinical", "pipeline"))], imported


def test_every_answer_place_is_read():
    r = read_yes_no("Based on the image, no, there is no mass. The hilum is normal, so the answer is no.",
                    "Is there a mass in the right hilum?")
    assert [p.kind for p in r.places] == ["token", "clause", "clause", "token"]
    assert r.polarity == "no"


# ------------------------------------------------------------------------- the suite on the fixture


def test_suite_writes_at_least_eight_wrong_styles_per_question():
    for r in CLOSED:
        items = list(closed_items(r["dataset"], str(r["qid"]), r["question"], str(r["answer"]).lower()))
        assert len({i.style for i in items if not i.right}) >= 8, r["question"]
    for r in OPEN:
        assert len({i.style for i in open_items("x", "1", r["question"], r["answer"], "spleen") if not i.right}) >= 8


def test_wrong_closed_answers_become_consistent_pairs():
    made = good = n = 0
    for r in CLOSED:
        gold = str(r["answer"]).lower()
        for item in closed_items(r["dataset"], str(r["qid"]), r["question"], gold):
            n += 1
            try:
                pair = make_vqa_pair(item.response, r["answer"], r["question"], seed=1)
            except TextPairError:
                continue
            want, side = (("no" if gold == "yes" else "yes"), pair.rejected) if item.right else (gold, pair.chosen)
            made += 1
            v = judge_yes_no(side, r["question"])
            good += v.states(want) and not v.contradicts_itself and fluent(side)
            assert (pair.on_policy == "chosen") == item.right
            assert _rebuilt(pair) == pair.chosen
    assert made >= 0.97 * n and good >= 0.99 * made, (made, good, n)


def test_wrong_open_answers_are_replaced_inside_the_sentence():
    made = good = n = 0
    for i, r in enumerate(OPEN):
        wrong = next(o["answer"] for o in OPEN[i + 1 :] + OPEN[:i] if not same_answer(o["answer"], r["answer"]))
        for item in open_items(r["dataset"], str(r["qid"]), r["question"], r["answer"], wrong):
            if item.right:
                continue
            n += 1
            try:
                pair = make_vqa_pair(item.response, r["answer"], r["question"], seed=1)
            except TextPairError:
                continue
            made += 1
            good += gives_open(pair.chosen, r["answer"], wrong) and pair.rejected == item.response
    assert made >= 0.85 * n and good >= 0.95 * made, (made, good, n)


def test_golds_given_as_sentences_are_read_for_their_answer():
    assert Gold.parse(TB_GOLD, TB_Q).yes_no == "yes"
    assert Gold.parse("The lungs are clear.", TB_Q).yes_no == "no"
    for r in CLOSED:
        cl = claims(r["question"])
        if cl is None:
            continue
        gold = str(r["answer"]).lower()
        sentence = f"{gold.capitalize()}, {cl[0] if gold == 'yes' else cl[1]}."
        assert Gold.parse(sentence, r["question"]).yes_no == gold, sentence
        pair = make_vqa_pair("Yes." if gold == "no" else "No.", sentence, r["question"], seed=0)
        assert pair.chosen == ("No." if gold == "no" else "Yes.")


def test_answer_not_editable_says_why():
    with pytest.raises(TextPairError) as e:
        make_vqa_pair("Normal chest X-ray.", TB_GOLD, TB_Q, 0)
    assert e.value.reason == "answer_not_editable" and "Normal chest X-ray" in e.value.detail


# ------------------------------------------------------------------------- open normalisation


@pytest.mark.parametrize("variants", [
    ["CXR", "chest X-ray", "radiograph", "X-ray", "chest radiograph"],
    ["PA", "posteroanterior"],
    ["R", "right", "Right side"],
    ["nodules", "a nodule", "the nodule"],
    ["2", "two"],
    ["3 cm", "3 centimeters", "3cm"],
])
def test_clinical_spellings_are_one_answer(variants):
    assert len({normalize_answer(v) for v in variants}) == 1, [normalize_answer(v) for v in variants]


def test_an_equivalent_answer_is_right_and_gets_an_error_injected():
    pair = make_vqa_pair("This is a chest radiograph.", "X-ray", "What imaging modality was used?", 0)
    assert pair.on_policy == "chosen" and pair.chosen == "This is a chest radiograph."
    assert not gives_open(pair.rejected, "X-ray")
    pair = make_vqa_pair("This is a posteroanterior view.", "PA", "What type of film is this?", 0)
    assert pair.on_policy == "chosen" and ("AP" in pair.rejected or "anteroposterior" in pair.rejected), pair


@pytest.mark.parametrize("gold,question,wrong,answer", [
    ("The abnormality is located in the right lung.", "Where is the abnormality?",
     "The abnormality is in the left lung.", "right lung"),
    ("This is a CT scan.", "What modality is this?", "MRI.", "CT"),
    ("The image shows a pneumothorax.", "What is the abnormality?", "Pleural effusion.", "pneumothorax"),
])
def test_open_golds_given_as_sentences_are_read_for_their_answer(gold, question, wrong, answer):
    assert same_answer(" ".join(Gold.parse(gold, question).terms), answer)
    pair = make_vqa_pair(wrong, gold, question, seed=0)
    assert pair.on_policy == "rejected" and pair.rejected == wrong
    assert gives_open(pair.chosen, answer, wrong) and gold not in pair.chosen


@pytest.mark.parametrize("question,text,polarity", [
    ("Are the lungs normal?", "The lungs appear normal with no signs of consolidation.", "yes"),
    ("Is there a pneumothorax?", "Pneumothorax is not seen.", "no"),
    ("Does the stomach appear in the image?", "The stomach does not appear in the image.", "no"),
    ("Are the lungs clear?", "There is a right lower lobe consolidation.", "no"),
    ("Is the trachea midline?", "The trachea is deviated to the right.", "no"),
    ("Is the heart enlarged?", "The cardiothoracic ratio is within normal limits.", "no"),
    ("Was this image taken without motion artifact?", "Yes, it is.", "yes"),
    ("Is there a pneumothorax?", "Pneumothorax: Yes", "yes"),
])
def test_a_clause_is_read_with_the_negations_that_bear_on_the_claim(question, text, polarity):
    assert read_yes_no(text, question).polarity == polarity


@pytest.mark.parametrize("response,gold,question,chosen", [
    ("Chest injury, lung disease, bullae.", "Brain", "Which organs/organ in the picture belong to the nervous system?",
     "Brain."),  # a wrong list is the wrong answer, not only its organ word
    ("It's in the left lung, near the hilum.", "Right lung", "Where is the abnormality?",
     "It's in the right lung, near the hilum."),  # the rest of the sentence stays
    ("I think it is C-T ratio.", "sinusitis", "What is going on with this patient?", "I think it is sinusitis."),
    ("This is a CT scan of the chest.", "X-ray", "What imaging modality was used?", "This is an X-ray scan of the chest."),
])
def test_wrong_open_answers_in_their_sentence(response, gold, question, chosen):
    pair = make_vqa_pair(response, gold, question, seed=0)
    assert (pair.on_policy, pair.rejected, pair.chosen) == ("rejected", response, chosen)
