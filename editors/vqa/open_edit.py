"""Fixing and injecting open answers: the gold replaces the wrong value inside the response's own
sentence; for a right answer, a plausible wrong value takes the gold's place."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence

from editors.base import SpanEdit
from editors.vqa.gold import Gold
from editors.vqa.open_read import OpenReading, _bare_phrase, _phrase_bounds, candidate_answers
from editors.vqa.text import _plural, display, gold_display, match_case, replace_words
from editors.vqa.words import (
    _ALT,
    _DISPLAY_OF,
    _STOP,
    EDITOR,
    ERROR_TYPE,
    FILLER,
    Word,
    _is_number,
    find_terms,
    tokenize,
)


def fix_open(text: str, reading: OpenReading, gold: Gold) -> Iterator[list[SpanEdit]]:
    """Proposals turning a wrong answer into the gold one, smallest first; a gloss in parentheses
    right after a replaced wrong term ("AP (anteroposterior)") goes with it."""
    for edits in _fix_open(text, reading, gold):
        out: list[SpanEdit] = []
        for e in (_drop_gloss(text, e) for e in edits):
            if not any(o.start <= e.start and e.end <= o.end for o in out):  # a side word inside a dropped gloss
                out.append(e)
        yield out


_GLOSS = re.compile(r"\s*\([^()]{1,40}\)")


def _drop_gloss(text: str, edit: SpanEdit) -> SpanEdit:
    m = _GLOSS.match(text, edit.end)
    if m and edit.end > edit.start:
        return SpanEdit(edit.start, m.end(), edit.replacement, edit.error_type, edit.editor)
    return edit


_MEASURE = re.compile(r"\b\d+(?:\.\d+)?\s*(?:mm|cm|millimet(?:er|re)s?|centimet(?:er|re)s?)\b", re.IGNORECASE)


def _fix_open(text: str, reading: OpenReading, gold: Gold) -> Iterator[list[SpanEdit]]:
    if _MEASURE.fullmatch(gold.text.strip()):
        found = list(_MEASURE.finditer(text))
        if len(found) == 1:  # "The nodule measures about 5 mm." -> "... about 2 cm.": only the measurement
            m = found[0]
            yield [SpanEdit(m.start(), m.end(), gold.text.strip(), ERROR_TYPE, EDITOR)]
    lower_text = not any(c.isupper() for c in text)
    sw = reading.sentence_words
    bare = _bare_phrase(text, tokenize(text)) if reading.conflicts else None
    listed = text[bare[0].start : bare[-1].end] if bare else ""
    if len(re.findall(r",|\band\b|\bor\b", listed)) >= 2 and "," not in gold.text:
        # "Chest injury, lung disease, bullae." to "Which organ ...?" (gold "Brain"): the list is the wrong
        # answer, not only its organ word
        first = bare[0]
        yield [SpanEdit(first.start, bare[-1].end, match_case(first.text, gold_display(gold.text), lower_text),
                        ERROR_TYPE, EDITOR)]
    flipped = _swap_sides(text, reading, gold)
    if flipped:
        # "on the right side, blunting the right costophrenic angle" with gold "left": every side turns, so
        # the rest of the answer keeps its geometry ("the left lung is clear" becomes "the right lung ...")
        yield flipped
    if reading.conflicts:
        edits = []
        for ws, value in reading.conflicts:
            i, j = sw.index(ws[0]), sw.index(ws[-1])
            if i == j and _is_number(value) and _is_number(ws[0].norm):
                edits.append(number_edit(text, sw, i, value, lower_text))
                continue
            rep = display(value, ws[0].text, lower_text) if value in _DISPLAY_OF \
                else match_case(ws[0].text, value, lower_text)
            edits.append(replace_words(text, sw, i, j, rep))
        yield sorted(edits, key=lambda e: e.start)
    if reading.words:
        # the whole answer phrase around the wrong words
        i, j = sw.index(reading.words[0]), sw.index(reading.words[-1])
        i, j = _phrase_bounds(sw, i, j)
        template = sw[i].text
        # after an acronym ("C-T ratio") the answer keeps its own case
        acronym = template[:1].isupper() and (len(template) == 1 or not template[1:].islower())
        starts = not text[: sw[i].start].strip() or text[: sw[i].start].rstrip()[-1:] in ".!?:"
        rep = gold_display(gold.text) if acronym and not starts else match_case(template, gold_display(gold.text),
                                                                                 lower_text)
        yield [replace_words(text, sw, i, j, rep)]


_SIDE = re.compile(r"\b(left|right)(?=(?:-sided)?\b)(?![ -]?(?:away|now|here)\b)", re.I)
_SIDE_SWAP = {"left": "right", "right": "left"}


def _swap_sides(text: str, reading: OpenReading, gold: Gold) -> list[SpanEdit] | None:
    """Every left/right of the response swapped, when the gold is one side and the answer the other."""
    want = gold.text.strip().lower().rstrip(".")
    if want not in _SIDE_SWAP or not reading.conflicts or any(v != want for _ws, v in reading.conflicts):
        return None
    if re.search(r"\b(that'?s|you'?re|is) right\b", text, re.I):
        return None
    found = list(_SIDE.finditer(text))
    if len(found) < 2:
        return None  # one side word: the plain replacement below is the whole edit
    return [SpanEdit(m.start(), m.end(), match_case(m.group(1), _SIDE_SWAP[m.group(1).lower()]), ERROR_TYPE,
                     EDITOR) for m in found]


def number_edit(text: str, sw: list[Word], i: int, value: str, lower_text: bool = False) -> SpanEdit:
    """Replace the number sw[i] by ``value`` in its style ("two" or "2"); going between one and many,
    the counted noun after it and an "is"/"are" before it agree ("is one kidney" -> "are two kidneys")."""
    old = sw[i]
    rep = display(value, old.text, lower_text)
    if (old.norm == "1") == (value == "1"):
        return SpanEdit(old.start, old.end, rep, ERROR_TYPE, EDITOR)
    start, end, parts = old.start, old.end, [rep]
    if i + 1 < len(sw) and text[old.end : sw[i + 1].start] == " " and sw[i + 1].text.isalpha() \
            and sw[i + 1].norm not in FILLER and sw[i + 1].low not in _STOP:
        noun = sw[i + 1]
        parts.append(_pluralize(noun.text) if value != "1" else _singularize(noun.text))
        end = noun.end
    if i > 0 and text[sw[i - 1].end : old.start] == " " and sw[i - 1].low in ("is", "are", "was", "were"):
        verb = sw[i - 1]
        parts.insert(0, match_case(verb.text, {"is": "are", "are": "is", "was": "were", "were": "was"}[verb.low]))
        start = verb.start
    return SpanEdit(start, end, " ".join(parts), ERROR_TYPE, EDITOR)


def _pluralize(word: str) -> str:
    if _plural(word):
        return word
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")


def _singularize(word: str) -> str:
    if not _plural(word):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    return word[:-2] if word.endswith(("ches", "shes", "xes", "sses")) else word[:-1]




def inject_open(text: str, reading: OpenReading, gold: Gold, candidates: Sequence[str] | None,
                rng: random.Random) -> Iterator[tuple[str, list[SpanEdit]]]:
    """(what was injected, edits) proposals putting a plausible wrong answer where the right one is."""
    lower_text = not any(c.isupper() for c in text)
    sw = reading.sentence_words
    words = reading.words
    i, j = sw.index(words[0]), sw.index(words[-1])
    contiguous = reading.how == "exact"
    if contiguous:
        for disp, _ in gold.options:  # the other choice of "A or B?"
            yield disp, [replace_words(text, sw, i, j, match_case(sw[i].text, gold_display(disp), lower_text))]
    terms = find_terms(words)
    for t in terms:
        if t.category == "number":
            n = float(t.value)
            value = str(int(n) + 1) if n.is_integer() else str(round(n + 1, 2))
        elif t.value in _ALT:
            value = _ALT[t.value]
        else:
            continue
        a, b = sw.index(t.words[0]), sw.index(t.words[-1])
        if t.category == "number":
            yield value, [number_edit(text, sw, a, value, lower_text)]
        else:
            yield value, [replace_words(text, sw, a, b, display(value, t.words[0].text, lower_text))]
    if contiguous:
        pool = candidate_answers(candidates, gold)
        rng.shuffle(pool)
        for disp, _ in pool[:8]:
            yield disp, [replace_words(text, sw, i, j, match_case(sw[i].text, gold_display(disp), lower_text))]


