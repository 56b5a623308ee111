"""Chat-style VQA answers whose explanation restates the answer in other words (the costophrenic
angles for an effusion, a markdown "Explanation:" label): the chosen side must state the gold in
the explanation too, or be a reject, never a half-fixed answer or a dangling label."""

from __future__ import annotations

import pytest

from editors.text_pairs import TextPairError, TextPairMaker


@pytest.fixture(scope="module")
def maker() -> TextPairMaker:
    return TextPairMaker()


def test_sharp_angles_go_when_the_gold_is_an_effusion(maker):
    p = maker.make("Looking at this radiograph, I don't see any pleural effusion; the costophrenic angles are sharp.",
                   "yes", task="vqa", prompt="Is there a pleural effusion?")
    assert "see a pleural effusion" in p.chosen and "sharp" not in p.chosen


def test_blunted_angles_are_denied_when_the_gold_is_no_effusion(maker):
    p = maker.make("Yes, there is a small left pleural effusion; the costophrenic angles are blunted.", "no",
                   task="vqa", prompt="Is there a pleural effusion?")
    assert p.chosen.startswith("No,") and "are not blunted" in p.chosen


@pytest.mark.parametrize("response", ["Nope - both costophrenic angles look sharp and clear.",
                                      "**Answer:** No\n\n**Explanation:** The lungs are clear without consolidation."])
def test_an_edit_never_leaves_a_dangling_label_or_dash(maker, response):
    try:
        p = maker.make(response, "yes", task="vqa", prompt="Is there a pleural effusion?")
    except TextPairError as e:
        assert e.reason == "not_fluent" and "nothing after it" in e.detail
        return
    assert not p.chosen.rstrip(" .").endswith((":", "-", ":**"))


@pytest.mark.parametrize("response,gold,question,expect", [
    ("This is an AP (anteroposterior) film.", "PA", "Is this a PA or AP view?", "This is a PA film."),
    ("The effusion is on the right (patient's right) side.", "left", "Which side is the effusion on?",
     "The effusion is on the left side."),
])
def test_a_gloss_of_the_wrong_answer_goes_with_it(maker, response, gold, question, expect):
    assert maker.make(response, gold, task="vqa", prompt=question).chosen == expect


@pytest.mark.parametrize("response,expect", [
    ("The nodule measures about 5 mm.", "The nodule measures about 2 cm."),
    ("About 1.5 cm in diameter.", "About 2 cm in diameter."),
])
def test_a_wrong_measurement_is_replaced_in_its_sentence(maker, response, expect):
    assert maker.make(response, "2 cm", task="vqa", prompt="What is the size of the nodule?").chosen == expect


def test_a_normal_statement_joined_by_so_is_a_place_and_never_left_as_a_fragment(maker):
    """"The heart size appears normal, so no cardiomegaly." to a cardiomegaly question whose gold is yes:
    both places say no; an edit that would leave ", so cardiomegaly." is a reject, not a pair."""
    with pytest.raises(TextPairError) as e:
        maker.make("The heart size appears normal, so no cardiomegaly.", "yes", task="vqa",
                   prompt="Is there cardiomegaly?")
    assert e.value.reason == "not_fluent"


@pytest.mark.parametrize("response,gold,question,expect,gone", [
    ("Yes, there is free air under the right hemidiaphragm, which is concerning for perforation.", "no",
     "Is there free air under the diaphragm?", "No, there is no free air under the right hemidiaphragm.",
     "perforation"),
    ("Yes, the tube is in good position, 4 cm above the carina.", "no",
     "Is the endotracheal tube in good position?", "No, the tube is not in good position.", "carina"),
    ("No, there is no mass, which is reassuring.", "yes", "Is there a mass?", "Yes, there is a mass.",
     "reassuring"),
])
def test_what_described_the_old_answer_goes_with_it(maker, response, gold, question, expect, gone):
    """A held-out probe left "..., which is concerning for perforation." after the free air was denied:
    a chosen side that denies a finding and then gives its consequence contradicts itself."""
    p = maker.make(response, gold, task="vqa", prompt=question)
    assert p.chosen == expect and gone not in p.chosen


def test_a_sentence_after_the_answer_stays(maker):
    p = maker.make("Yes, there is a mass in the right hilum, measuring 3 cm. The heart size is normal.", "no",
                   task="vqa", prompt="Is there a mass?")
    assert p.chosen == "No, there is no mass in the right hilum. The heart size is normal."


@pytest.mark.parametrize("response,gold,question,expect", [
    # a normal statement about another organ is no antonym of the asked finding
    ("The lungs do not appear hyperinflated; the diaphragms are normal in position.", "yes",
     "Are the lungs hyperinflated?", "The lungs appear hyperinflated; the diaphragms are normal in position."),
    # "fluid" is the effusion in an answer about one
    ("The answer is no. Both costophrenic angles are sharp, and there is no fluid.", "yes",
     "Is there pleural effusion?", "The answer is yes. There is fluid."),
    # the consequence of the old answer goes with it
    ("No free air is seen under the diaphragm, so there is no evidence of perforation.", "yes",
     "Is there free air?", "Free air is seen under the diaphragm."),
    ("Yes. A large mass is present in the left upper lobe, suspicious for malignancy.", "no",
     "Is there a mass in the left lung?", "No. A large mass is not present in the left upper lobe."),
    # "clear" cannot stay beside the finding it now states: the clause goes, the yes stays
    ("No, the lungs appear clear with no focal consolidation to suggest pneumonia.", "yes",
     "Is there evidence of pneumonia?", "Yes."),
    ("No, both hemidiaphragms are at a normal level.", "yes", "Is the diaphragm elevated?", "Yes."),
])
def test_explanations_that_would_contradict_the_new_answer(maker, response, gold, question, expect):
    assert maker.make(response, gold, task="vqa", prompt=question).chosen == expect


@pytest.mark.parametrize("response,gold,question,expect", [
    ("The effusion is on the right side, blunting the right costophrenic angle.", "left",
     "Where is the pleural effusion?", "The effusion is on the left side, blunting the left costophrenic angle."),
    ("The lungs are abnormal, showing diffuse opacities.", "heart", "What organ is abnormal?",
     "The heart is abnormal, showing diffuse opacities."),
    ("Yes, an endotracheal tube is present with the tip above the carina.", "no", "Is the patient intubated?",
     "No, an endotracheal tube is not present."),
    ("**Answer: No**\n\nThe left lung appears clear, without masses or consolidation.", "yes",
     "Is there an abnormality in the left lung?", "**Answer: Yes**\n\nThe left lung appears abnormal."),
    ("Yes, this chest X-ray appears normal. The heart, lungs, and bones show no abnormalities.", "no",
     "Is this image normal?",
     "No, this chest X-ray does not appear normal. The heart, lungs, and bones show abnormalities."),
])
def test_every_mention_of_the_answer_follows_it(maker, response, gold, question, expect):
    """Held-out-style probes: the side named twice, the verb after a replaced organ, the tube's tip,
    'abnormality' questions answered by 'clear' / 'no abnormalities'."""
    assert maker.make(response, gold, task="vqa", prompt=question).chosen == expect


def test_a_markdown_list_answer_is_read_line_by_line(maker):
    """A chat answer as a bullet list: each line answers (the sharp angles go, line and bullet; "no fluid"
    turns), not only the final "Answer: No"."""
    p = maker.make("Looking at the image:\n- Costophrenic angles: sharp\n- Pleural space: no fluid\nAnswer: No",
                   "yes", task="vqa", prompt="Is there a pleural effusion?")
    assert p.chosen == "Looking at the image:\n- Pleural space: fluid\nAnswer: Yes"
