"""Reading the answer of a response to an open or choice question: where it names the gold, or which
other value (an option, a value of the same kind, a candidate answer) it gives instead."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from editors.vqa.gold import Gold
from editors.vqa.text import (
    _CLAUSE_BREAK,
    _within,
    gold_display,
    is_negation,
    language_of,
    sentences,
    uncertain,
)
from editors.vqa.words import (
    _AUX,
    _STOP,
    FILLER,
    NO_WORDS,
    YES_WORDS,
    Term,
    VqaReadError,
    Word,
    content_words,
    find_terms,
    tokenize,
    yes_no_of,
)

# ------------------------------------------------------------------------------------- open answers


@dataclass
class OpenReading:
    """How a response answers an open or choice question."""

    correct: bool
    how: str  # exact | words | conflict | bare | echo
    answer: str  # the normal form of what the response answers
    words: list[Word]  # the answer words (the gold match, or the wrong phrase)
    sentence_words: list[Word]
    conflicts: list[tuple[tuple[Word, ...], str]] = field(default_factory=list)  # (words, replacement)


def _find_seq(content: Sequence[Word], terms: Sequence[str]) -> list[Word] | None:
    n = len(terms)
    for i in range(len(content) - n + 1):
        if tuple(w.norm for w in content[i : i + n]) == tuple(terms):
            return list(content[i : i + n])
    return None


def candidate_answers(candidates: Sequence[str] | None, gold: Gold) -> list[tuple[str, tuple[str, ...]]]:
    """Usable other answers: different from the gold, neither part of it nor containing it."""
    out, seen = [], {gold.terms}
    for c in candidates or ():
        parsed = _candidate(str(c))
        if parsed is None:
            continue
        norms = parsed[1]
        if norms in seen or set(norms) <= set(gold.terms) or set(gold.terms) <= set(norms):
            continue
        seen.add(norms)
        out.append(parsed)
    return out


@lru_cache(maxsize=65536)
def _candidate(c: str) -> tuple[str, tuple[str, ...]] | None:
    c = " ".join(c.split())
    if not c or language_of(c) != "en" or yes_no_of(c):
        return None
    norms = tuple(w.norm for w in content_words(tokenize(c)))
    return (c, norms) if norms else None


def read_open(text: str, gold: Gold, question: str = "", candidates: Sequence[str] | None = None) -> OpenReading:
    """Read the answer of a response to an open or choice question, or raise VqaReadError."""
    if not gold.terms:
        raise VqaReadError("unsupported_answer", f"the gold answer {gold.text!r} has no comparable words")
    if uncertain(text):
        raise VqaReadError("ambiguous_answer", "the response says the answer cannot be determined")
    words = tokenize(text)
    g_terms = find_terms(tokenize(gold.text))
    g_by_cat: dict[str, list[Term]] = {}
    for t in g_terms:
        g_by_cat.setdefault(t.category, []).append(t)
    others = list(gold.options) + candidate_answers(candidates, gold)
    for s in sentences(text):
        sw = _within(words, s)
        content = content_words(sw)
        match = _find_seq(content, gold.terms)
        if match and _lists_more(find_terms(sw), g_by_cat):
            match = None  # "lung and stomach" for the gold list "lung, heart": not the answer
        if match:
            if any(is_negation(w) for w in sw if w.end <= match[0].start and _same_clause(text, w, match[0])):
                raise VqaReadError("ambiguous_answer", "the response names the gold answer under a negation")
            return OpenReading(True, "exact", gold.normal, match, sw)
        s_terms = find_terms(sw)
        conflicts = _category_conflicts(s_terms, g_by_cat)
        norms = {w.norm for w in content}
        if set(gold.terms) <= norms and not conflicts and not _any_other_value(s_terms, g_by_cat) \
                and all(_find_seq(content, item) for item in _list_items(gold.text)):
            found = [w for w in content if w.norm in gold.terms]
            return OpenReading(True, "words", gold.normal, found, sw)
        if not conflicts:
            for _disp, onorms in others:
                hit = _find_seq(content, onorms)
                if hit:  # another option or candidate: the whole phrase it stands in is the answer
                    i, j = _phrase_bounds(sw, sw.index(hit[0]), sw.index(hit[-1]))
                    conflicts = [(tuple(sw[i : j + 1]), gold_display(gold.text))]
                    break
        if conflicts:
            wrong = " ".join(w.norm for ws, _ in conflicts for w in ws)
            return OpenReading(False, "conflict", wrong, [w for ws, _ in conflicts for w in ws], sw, conflicts)
    bare = _bare_phrase(text, words)
    if bare:
        return OpenReading(False, "bare", " ".join(w.norm for w in content_words(bare)), bare, words)
    echo = _echo_phrase(text, words, question)
    if echo:
        return OpenReading(False, "echo", " ".join(w.norm for w in content_words(echo[0])), echo[0], echo[1])
    sents = sentences(text)
    nothing = [w for w in words if w.low in ("none", "nothing") and sents and w.end <= sents[0][1]]
    if len(nothing) == 1 and "none" not in gold.terms:  # "I believe the answer is none." to an open question
        return OpenReading(False, "none", "none", nothing, _within(words, sents[0]))
    raise VqaReadError("answer_not_found", f"no answer to compare with {gold.text!r} in the response")


def _same_clause(text: str, a: Word, b: Word) -> bool:
    return not _CLAUSE_BREAK.search(text, a.end, b.start)


def _category_conflicts(s_terms: list[Term], g_by_cat: dict[str, list[Term]]) -> list[tuple[tuple[Word, ...], str]]:
    """Response terms of a kind the gold names, with another value, where the gold's value is absent."""
    out = []
    present = {(t.category, t.value) for t in s_terms}
    for cat, gts in g_by_cat.items():
        if any((cat, g.value) in present for g in gts):
            continue
        for t in s_terms:
            if t.category == cat:
                out.append((t.words, gts[0].value))
                break
    return out


def _lists_more(s_terms: list[Term], g_by_cat: dict[str, list[Term]]) -> bool:
    """The gold lists several values of a kind ("lung, heart") and the sentence names one more."""
    return any(len(g_by_cat.get(t.category, ())) > 1 and t.value not in {g.value for g in g_by_cat[t.category]}
               for t in s_terms)


def _any_other_value(s_terms: list[Term], g_by_cat: dict[str, list[Term]]) -> bool:
    return any(t.category in g_by_cat and t.value not in {g.value for g in g_by_cat[t.category]} for t in s_terms)


_LEAD_IN = re.compile(r"^\s*(?:(?:based on|according to|judging from|looking at) (?:the|this) [\w -]{0,30}?"
                      r"(?:image|scan|film|x-ray|radiograph|findings?)\s*,?\s*)?(?:the answer is|answer\s*:|it is|"
                      r"it's|this is|these are|they are|that is|i think (?:it is|it's|this is)|this appears to be|"
                      r"it appears to be)?\s*", re.I)
_TRAIL = re.compile(r",?\s*(?:based on|according to|as seen on|judging from)\s+(?:the|this)\b[^,]*$", re.I)
_NEGATIVE_PHRASE = frozenset({"no", "not seen", "none", "not visible", "not present", "absent", "not seen here"})


def _bare_phrase(text: str, words: list[Word]) -> list[Word] | None:
    """A response that is only an answer phrase ("Pancreas.", "The right upper lobe"): its words."""
    sents = sentences(text)
    if not sents:
        return None
    if len(sents) > 1:  # "Pancreas. This is seen on the image.": the answer phrase is the first sentence
        words = [w for w in words if w.end <= sents[0][1]]
        text = text[: sents[0][1]]
    lead = _LEAD_IN.match(text)
    trail = _TRAIL.search(text)
    ws = [w for w in words if (not lead or w.start >= lead.end()) and (not trail or w.end <= trail.start())]
    content = content_words(ws)
    if len(content) == 1 and content[0].low in YES_WORDS | NO_WORDS:
        return content  # "No." to "What modality is this?"
    if content and " ".join(w.low for w in ws if w.low not in ("here", "in", "the", "image")) in _NEGATIVE_PHRASE:
        return ws  # "Not seen." to "Which part of the body is this?": the whole phrase is the answer
    if not content or len(content) > 10:
        return None
    if any(w.low in _AUX or w.low in _STOP - {"both"} or is_negation(w) for w in content):
        return None
    return content


def _echo_phrase(text: str, words: list[Word], question: str) -> tuple[list[Word], list[Word]] | None:
    """In the first sentence, the first run of words the question does not contain ("The mass is located
    in the right kidney." for "Where is the mass located?" -> "right kidney")."""
    sents = sentences(text)
    if not sents or not question:
        return None
    q = {w.norm for w in tokenize(question)}
    sw = _within(words, sents[0])
    if any(is_negation(w) for w in sw):
        return None
    run: list[Word] = []
    gap: list[Word] = []
    for w in sw:
        answer_word = w.norm not in q and w.norm not in FILLER and w.norm not in _STOP and w.low not in _STOP
        if answer_word:
            run.extend(gap if run else [])
            gap = []
            run.append(w)
        elif run and w.norm in FILLER and w.low not in ("and",):
            gap.append(w)
        elif run:
            break
    content = content_words(run)
    if not content or len(content) > 6:
        return None
    return run, sw

def _phrase_bounds(sw: list[Word], i: int, j: int) -> tuple[int, int]:
    """Grow words i..j to the answer phrase: neighbours that are neither filler, stop word nor negation."""
    def inside(w: Word) -> bool:
        return w.norm not in FILLER and w.low not in _STOP and w.norm not in _STOP and not is_negation(w)

    while i > 0 and inside(sw[i - 1]):
        i -= 1
    while j + 1 < len(sw) and inside(sw[j + 1]):
        j += 1
    return i, j


def _list_items(gold_text: str) -> list[tuple[str, ...]]:
    """The items of a gold that lists several ("Brain Edema, Brain Enhancing Tumor"): each must be named
    whole, not only its words scattered over the sentence."""
    parts = re.split(r",|;|\band\b", gold_text)
    if len(parts) < 2:
        return []
    return [t for t in (tuple(w.norm for w in content_words(tokenize(p))) for p in parts) if t]
