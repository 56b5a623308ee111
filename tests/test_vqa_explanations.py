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
