"""The text half of a pair for task ``vqa``: the one clinical error of an answer is a wrong answer.

A wrong answer is replaced by the gold one inside the response's own wording (``on_policy =
"rejected"``); a right answer gets a plausible wrong one injected in the same place (the opposite
for yes/no, the other option of an "A or B?" question, a value of the same kind, or another answer
from ``candidates``; ``on_policy = "chosen"``). A yes/no answer is edited in every place it is given
(``editors/vqa/places.py``): each yes/no word and each clause that restates the question's claim, so
neither side contradicts itself. A gold written as a sentence is read for its answer first.

Every pair is verified before it is returned, as for reports: the edited text is read again, and the
chosen side must answer the gold while the rejected side must not; outside the edited spans the two
sides are byte-identical. A response the reader cannot handle is a reject with a reason, never a
guess: ``unsupported_language`` (only English is edited), ``empty_response``, ``empty_reference``,
``answer_not_found``, ``ambiguous_answer``, ``answer_not_editable``, ``no_error``, ``edit_unverified``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from editors.apply import apply_edits, edit_records
from editors.base import SpanEdit
from editors.vqa import (
    ERROR_TYPE,
    Gold,
    VqaReadError,
    answer_locations,
    fix_open,
    inject_open,
    language_of,
    read_open,
    read_yes_no,
    state_answer,
)
from editors.vqa.gold import _YES_NO_QUESTION
from schemas.pair import Edit
from schemas.text_pair import TextPair, TextPairError

_LANGUAGE = {"zh": "Chinese", "other": "not in Latin script"}


def make_vqa_pair(response: str, reference: str, prompt: str, seed: int, *,
                  candidates: Sequence[str] | None = None) -> TextPair:
    """A verified pair from one response to the question ``prompt`` whose gold answer is ``reference``.

    ``candidates``: other gold answers seen for the same kind of question (optional), a source of
    plausible wrong answers to inject when the response is right. Raises TextPairError.
    """
    if not isinstance(response, str) or not response.strip():
        raise TextPairError("empty_response", "the response is empty")
    reference = "" if reference is None else str(reference)
    if not reference.strip():
        raise TextPairError("empty_reference", "the sample has no gold answer (reference)")
    for name, value in (("prompt", prompt or ""), ("reference", reference), ("response", response)):
        lang = language_of(value)
        if lang != "en":
            raise TextPairError("unsupported_language",
                                f"the {name} is {_LANGUAGE[lang]}; VQA answers are edited in English only")
    gold = Gold.parse(reference, prompt or "")
    if gold.yes_no:
        pair = _yes_no_pair(response, gold, prompt or "")
    else:
        pair = _open_pair(response, gold, prompt or "", candidates, random.Random(seed))
    pair.locations = answer_locations(prompt or "", reference)
    return pair


def _yes_no_pair(response: str, gold: Gold, prompt: str) -> TextPair:
    """Every place the response answers states the gold in chosen; rejected is the response verbatim
    (or, for a right response, the response with the opposite stated in every place)."""
    try:
        reading = read_yes_no(response, prompt)
    except VqaReadError as e:
        raise TextPairError(e.reason, e.detail) from e
    fixed = bool(reading.wrong(gold.yes_no))
    target = gold.yes_no if fixed else ("no" if gold.yes_no == "yes" else "yes")
    edits, why = state_answer(response, reading, prompt, target)
    if not edits:
        if fixed:
            raise TextPairError("answer_not_editable", f"the response answers {reading.polarity!r}, but {why}")
        raise TextPairError("no_error", f"the answer is right and the opposite cannot be injected: {why}")
    edited = apply_edits(response, edits)
    try:
        after = read_yes_no(edited, prompt)
    except VqaReadError as e:
        raise TextPairError("edit_unverified", f"the edited response no longer reads: {e.detail}") from e
    if after.polarity != target:
        raise TextPairError("edit_unverified", f"the edited response answers {after.polarity!r}, not {target!r}")
    notes = {"answer_kind": "yes_no", "gold_answer": gold.yes_no, "response_answer": reading.polarity,
             "read": reading.how, "places": len(reading.places)}
    if not fixed:
        notes["injected_answer"] = target

    def says_gold(text: str) -> bool:
        try:
            return read_yes_no(text, prompt).polarity == gold.yes_no
        except VqaReadError:
            return False

    return _pair(response, edits, fixed=fixed, chosen_answer=gold.yes_no, notes=notes, check=says_gold)


def _open_pair(response: str, gold: Gold, prompt: str, candidates: Sequence[str] | None,
               rng: random.Random) -> TextPair:
    try:
        reading = read_open(response, gold, prompt, candidates)
    except VqaReadError as e:
        raise TextPairError(e.reason, e.detail) from e

    def right(text: str) -> bool:
        try:
            return read_open(text, gold, prompt, candidates).correct
        except VqaReadError:
            return False

    def wrong(text: str) -> bool:  # read, and not the gold: a missing answer is not a wrong one
        try:
            return not read_open(text, gold, prompt, candidates).correct
        except VqaReadError:
            return False

    kind = "choice" if gold.options else "open"
    if len(gold.text.split()) >= 4 and _YES_NO_QUESTION.match(prompt) and not gold.options:
        raise TextPairError("answer_not_found", f"the gold {gold.text!r} answers a yes/no question but gives "
                                                "no yes/no that can be read, and a sentence is not put into an answer")
    notes = {"answer_kind": kind, "gold_answer": gold.normal, "read": reading.how}
    if reading.correct:
        for injected, edits in inject_open(response, reading, gold, candidates, rng):
            if wrong(apply_edits(response, edits)):
                notes["injected_answer"] = injected
                return _pair(response, edits, fixed=False, chosen_answer=gold.normal, notes=notes, check=right)
        raise TextPairError("no_error", "the answer is right and no plausible wrong answer could be injected "
                                        "(no option, no value of a known kind, no candidate)")
    notes["response_answer"] = reading.answer
    for edits in fix_open(response, reading, gold):
        if right(apply_edits(response, edits)):
            return _pair(response, edits, fixed=True, chosen_answer=gold.normal, notes=notes, check=right)
    raise TextPairError("edit_unverified",
                        f"the answer {reading.answer!r} differs from {gold.normal!r} but no edit of it verified")


def _pair(response: str, edits: list[SpanEdit], *, fixed: bool, chosen_answer: str, notes: dict,
          check) -> TextPair:
    """Build the pair and verify it once more: chosen answers the gold, rejected does not, and the
    text outside the edits is identical."""
    edited = apply_edits(response, edits)
    chosen, rejected = (edited, response) if fixed else (response, edited)
    records = edit_records(response, edits, original_is_rejected=fixed)
    if not check(chosen) or check(rejected):
        raise TextPairError("edit_unverified", f"chosen does not answer {chosen_answer!r}, or rejected does")
    if not outside_identical(chosen, rejected, records):
        raise TextPairError("edit_unverified", "the text outside the edited spans differs")
    stub = _stub(edited, response)
    if stub:
        raise TextPairError("not_fluent", f"the edit leaves {stub!r}: a header or dash with nothing after it, "
                            "or a sentence that opens on a connective")
    return TextPair(
        chosen=chosen,
        rejected=rejected,
        on_policy="rejected" if fixed else "chosen",
        edits=records,
        error_types=[ERROR_TYPE],
        locations=[],
        notes={**notes, "errors_found": 1 if fixed else 0, "extractor": "vqa"},
    )


_OPENS_BROKEN = re.compile(r"^(?:[,;:]|(?:so|and|or|but|which|with)\b)", re.IGNORECASE)
_STUB = re.compile(r"(:\W*|\s[-\u2013\u2014]\s*)[.!?]?$")


def _stub(edited: str, response: str) -> str | None:
    """A changed sentence that ends on a label or a dash ("**Explanation:**.", "Yes -.") once the words
    after it went: structurally broken, so no pair (the report checker's rules, for short answers)."""
    from clinical.fluency import changed_sentences

    for sent in changed_sentences(response, edited):
        body = sent.replace("*", "").strip()
        if _STUB.search(body) or _OPENS_BROKEN.match(body):
            return sent.strip()
    return None


def outside_identical(chosen: str, rejected: str, edits: list[Edit]) -> bool:
    """True when chosen and rejected agree byte for byte everywhere but inside the edits' spans."""
    pc = pr = 0
    for e in sorted(edits, key=lambda e: e.rejected_start):
        if rejected[pr : e.rejected_start] != chosen[pc : e.chosen_start]:
            return False
        if rejected[e.rejected_start : e.rejected_end] != e.before or chosen[e.chosen_start : e.chosen_end] != e.after:
            return False
        pr, pc = e.rejected_end, e.chosen_end
    return rejected[pr:] == chosen[pc:]
