"""The gold answer of a VQA sample: yes/no, one of the question's options, or an open value; a gold
given as a sentence ("Yes, there are tuberculosis lesions in both upper lungs.") is read for its answer."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from editors.vqa.words import _STOP, VqaReadError, Word, content_words, tokenize, yes_no_of


@dataclass
class Gold:
    """The gold answer and what the question offers: its options ("left or right?") and its terms."""

    text: str
    yes_no: str | None
    terms: tuple[str, ...]
    options: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # (display, norms) besides gold

    @classmethod
    def parse(cls, answer: str, question: str) -> Gold:
        text = " ".join(str(answer).split())
        terms = tuple(w.norm for w in content_words(tokenize(text)))
        yes_no = yes_no_of(text) if _YES_NO_QUESTION.match(question) or not question.strip() \
            or text.lower().strip(" .!") in ("yes", "no") else None  # "None" to "What diseases ...?" is open
        yes_no = yes_no or sentence_yes_no(text, question)
        if not yes_no:
            phrase = sentence_answer(text, question)
            if phrase is not None:  # "The abnormality is located in the right lung." -> "right lung"
                text = phrase
                terms = tuple(w.norm for w in content_words(tokenize(text)))
        return cls(text, yes_no, terms, [] if yes_no else question_options(question, terms))

    @property
    def normal(self) -> str:
        return self.yes_no or " ".join(self.terms)


def question_options(question: str, gold_terms: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """The other choices of an "A or B?" / "A, B or C?" question whose answer is one of them."""
    m = re.search(r"([^?]*?)\bor\b([^?]*)", question, re.I)
    if not m or not gold_terms:
        return []
    left_text, right_text = m.group(1), m.group(2)
    left = left_text.split(",")
    items = [p for p in left[:-1] if p.strip() and len(p.split()) <= 3]  # "lung, liver or heart"
    before = content_words(tokenize(left[-1]))
    after = content_words(tokenize(right_text))
    n = len(gold_terms)
    raw: list[list[Word]] = []
    g = tuple(gold_terms)
    if tuple(w.norm for w in after[:n]) == g or (after and after[0].norm == g[0]):
        raw.append(before[-max(n, 1):])
    elif tuple(w.norm for w in before[-n:]) == g or (before and before[-1].norm == g[-1]):
        raw.append(after[: max(n, 1)])
    else:
        return []
    if items:
        raw.extend(content_words(tokenize(p))[-max(n, 1):] for p in items[-3:])
    out = []
    for ws in raw:
        ws = [w for w in ws if w.norm not in _STOP or w.norm in g]
        norms = tuple(w.norm for w in ws)
        if norms and norms != g and not set(norms) <= set(g):
            out.append((" ".join(w.text for w in ws), norms))
    return out




_YES_NO_QUESTION = re.compile(r"^\s*(?:is|are|was|were|does|do|did|has|have|had|can|could|will|would|should|"
                              r"might|may)\b", re.I)


def sentence_yes_no(answer: str, question: str) -> str | None:
    """The yes/no a gold written as a sentence gives ("Yes, there are tuberculosis lesions in both upper
    lungs." -> "yes"; "The lungs are clear." to "Is there tuberculosis?" -> "no"), read like a response:
    every place it answers must agree. None for a gold that is not such a sentence."""
    if len(answer.split()) < 2 or not _YES_NO_QUESTION.match(question):
        return None
    if question_options(question, tuple(w.norm for w in content_words(tokenize(answer)))):
        return None  # "Is it solid or cystic?" answered "Solid mass": a choice, not a yes/no
    from editors.vqa.places import read_yes_no

    try:
        polarity = read_yes_no(answer, question).polarity
    except VqaReadError:
        return None
    return polarity if polarity in ("yes", "no") else None


_SENTENCE = re.compile(r"^\s*(?:(?:the|this|these|that)(?P<subject>(?:\s+[\w-]+){0,2}?)|it|there|they)\s+(?:is|are|was|were|shows?|"
                       r"appears?(?:\s+to\s+be)?|demonstrates?|looks?\s+like|reveals?)\s+(?:most\s+likely\s+|probably\s+)?"
                       r"(?:(?:located|seen|situated|found|visible)\s+)?(?:(?:in|at|on|within|of)\s+)?(?:(?:the|a|an)\s+)?"
                       r"(?P<answer>[^.;]+?)\s*\.?\s*$", re.I)


def sentence_answer(answer: str, question: str) -> str | None:
    """The answer phrase of an open gold written as a sentence: what follows its subject and verb ("The
    abnormality is located in the right lung." -> "right lung"; "This is a CT scan." -> "CT scan").
    None when the gold is not such a sentence."""
    if len(answer.split()) < 3:
        return None
    m = _SENTENCE.match(answer)
    if not m or not m.group("answer").strip():
        return None
    q = {w.norm for w in tokenize(question)}
    subject = [w for w in tokenize(m.group("subject") or "") if w.norm not in _GENERIC_SUBJECT]
    if any(w.norm not in q for w in subject) or len(subject) > 1:
        return None  # "The left costophrenic angle is blunted": the subject carries the answer
    return m.group("answer")


_GENERIC_SUBJECT = frozenset("image picture scan film study finding findings answer used shown seen imaging".split())
