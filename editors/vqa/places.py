"""Read a yes/no answer as every place where it answers: each yes/no word, and each clause that
restates the question's claim.

Why every place: chat models answer "Based on the image, no, there is no mass in the right hilum."
or "Yes. The heart is not abnormal.", so the answer is given two or three times. A pair that edits
one place and leaves another teaches a model to contradict itself, so the editor (``yes_no.py``)
must see them all.

- a **token** place is a yes/no word standing alone: at the start of a sentence or clause ("Yes,",
  "No."), after a lead-in ("Based on the image, no, ..."), or as "The answer is yes.";
- a **clause** place is a clause (``clinical.extract.rules.split_clauses``, the report extractor's
  clause reader, cut once more at a yes/no word and at "and there ...") that talks about what the
  question asks: it shares a content word with the question, names a finding the rule extractor
  reads in the question (``clinical.findings``), names another value of a kind the question names
  ("this is a CT" to "Is this an MRI?"), an antonym of the question's word ("abnormal" to "Is the
  heart normal?"), or is a normal statement ("the lungs are clear") about the organ the question's
  finding lies in. Its polarity is the parity of its negations, antonyms and other values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from clinical.extract.rules import split_clauses
from clinical.extract.tokens import tokenize as report_tokens
from editors.vqa.text import is_negation, uncertain
from editors.vqa.words import (
    _ANTONYMS,
    _PRONOUN_START,
    _STOP,
    NO_WORDS,
    YES_WORDS,
    Term,
    VqaReadError,
    Word,
    content_words,
    find_terms,
    tokenize,
)

_LEAD = re.compile(r"(?:^|[.!?:;,\n(\-\u2014*\"']|\b(?:answer(?: to (?:the|this) question)?(?: is| would be)?"
                   r"|i would say|i'd say|so|then|and|short|simply|i think|i believe|definitely|certainly|probably|likely|"
                   r"clearly|absolutely|most likely|very likely)\s*:?)\s*[*\"']*\s*$", re.I)
_TAIL = re.compile(r"^\s*[*\"']*\s*(?:[,.;:!\n()\u2013\u2014-]|$)")
NORMAL_STATEMENT = re.compile(r"\b(?:clear|sharp|normal|unremarkable|within normal limits|healthy|no acute (?:\w+ )?"
                     r"(?:abnormalit(?:y|ies)|findings?|disease|process)|no (?:abnormalit(?:y|ies)|findings?|"
                     r"pathology|disease))\b", re.I)
_NORMAL_Q = frozenset("normal abnormal abnormality clear unremarkable healthy".split())
_LEAD_IN = re.compile(r"(?:based on|according to|judging from|looking at|from|in|on)\s+(?:the|this|these)\b[^,:\n]*"
                      r"(?:[,:]|$)|[*\s]*(?:answer|explanation|reasoning|rationale|impression|conclusion)\s*[*]*\s*:[*\s]*",
                      re.I)
_CHOICES = re.compile(r"[-(\s]*\byes\s*/\s*no\b\)?", re.I)
_WNL = re.compile(r"within normal limits", re.I)
_CLAIM_WORDS = frozenset("abnormality abnormalities lesion lesions finding findings".split())  # what a claim is about
_BARE = frozenset("it there this they that present seen visible identified noted evident".split())
_RELATIVE = frozenset({"which", "who", "whose", "that"})
APPOSITIVES = frozenset("consistent compatible suggesting suggestive indicating likely probably representing "
                        "concerning".split())
_SUBCLAUSE = re.compile(r",?\s+\band\b\s+(?=(?:there|the|no|it|this|these|a|an)\b)|,\s+(?=(?:most\s+)?(?:"
                        + "|".join(sorted(APPOSITIVES)) + r")\b)", re.I)


@dataclass(frozen=True)
class Place:
    """One place where the response answers: a yes/no ``token``, or a ``clause`` about the question."""

    kind: str  # token | clause
    polarity: str  # yes | no
    start: int
    end: int
    words: tuple[Word, ...]  # the token, or the clause's words (after any yes/no word in it)
    how: str  # token | assertion | negation | antonym | conflict | normal
    cues: tuple[Word, ...] = ()
    antonyms: tuple[tuple[Word, str], ...] = ()
    conflicts: tuple[tuple[Term, Term], ...] = ()
    tail: int | None = None  # where a phrase that backs the claim begins ("with no signs of ..."), if any


@dataclass
class YesNoReading:
    """Every place a response answers a yes/no question, in text order."""

    places: list[Place] = field(default_factory=list)

    @property
    def polarities(self) -> set[str]:
        return {p.polarity for p in self.places}

    @property
    def polarity(self) -> str:
        """The answer when every place agrees, else "mixed"."""
        ps = self.polarities
        return ps.pop() if len(ps) == 1 else "mixed"

    @property
    def how(self) -> str:
        return "+".join(sorted({p.how for p in self.places}))

    def wrong(self, target: str) -> list[Place]:
        return [p for p in self.places if p.polarity != target]


def read_yes_no(text: str, question: str) -> YesNoReading:
    """All answer places of ``text``; raises VqaReadError when it has none or says it cannot tell."""
    words = tokenize(text)
    if not words:
        raise VqaReadError("answer_not_found", "the response has no words")
    tokens = [w for w in words if _is_token(text, w, words)]
    if uncertain(text) and not tokens:  # "Yes, although it is difficult to say." still answers
        raise VqaReadError("ambiguous_answer", "the response says the answer cannot be determined")
    places = [Place("token", "yes" if w.low in YES_WORDS else "no", w.start, w.end, (w,), "token")
              for w in tokens]
    q = _question(question)
    token_ends = {w.end for w in tokens}
    for start, end in claim_spans(text):
        cuts = [start] + [w.end for w in tokens if start < w.end <= end] + [end]
        for a, b in zip(cuts, cuts[1:], strict=False):  # the parts of a clause around its yes/no words
            ws = tuple(w for w in words if a <= w.start and w.end <= b and w not in tokens)
            if ws and b in token_ends and re.fullmatch(r"[\s*]*:[\s*\"']*\w+", text[ws[-1].end : b]):
                continue  # "Pneumothorax: Yes": a label, not a claim
            lead = _LEAD_IN.match(text, ws[0].start) if ws else None
            if lead:  # "Based on the image," / "In this image,": where the answer comes from, not a claim
                ws = tuple(w for w in ws if w.start >= lead.end())
            if not ws or (ws[0].low in _RELATIVE and not _names_concept(text, ws[0].start, ws[-1].end, q)):
                continue  # "which has the effect of ...": part of a noun, not a claim
            place = _clause_place(text, ws, q)
            if place is not None:
                places.append(place)
    if not places:
        raise VqaReadError("answer_not_found", "no yes/no word and no clause about the question")
    return YesNoReading(sorted(places, key=lambda p: p.start))


def claim_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the clauses of ``text``: the report clause splitter, then "..., and there ..."."""
    toks = report_tokens(text)
    out: list[tuple[int, int]] = []
    for _sent, lo, hi in split_clauses(toks, text):
        if hi <= lo:
            continue
        s, e = toks[lo].start, toks[hi - 1].end
        for ls, le in _lines(text, s, e):  # a markdown list: each line answers on its own
            pos = ls
            for m in _SUBCLAUSE.finditer(text, ls, le):
                if len(text[pos : m.start()].split()) >= 3:
                    out.append((pos, m.start()))
                    pos = m.end()
            out.append((pos, le))
    return out


def _lines(text: str, s: int, e: int) -> list[tuple[int, int]]:
    """[s, e) cut at line breaks, each piece without its bullet and surrounding space."""
    out = []
    pos = s
    for m in re.finditer(r"\s*\n[\s\-*•]*", text[s:e]):
        if s + m.start() > pos:
            out.append((pos, s + m.start()))
        pos = s + m.end()
    if e > pos:
        out.append((pos, e))
    return out


def _is_token(text: str, w: Word, words: list[Word]) -> bool:
    """A yes/no word that answers by itself (not the determiner of "no effusion")."""
    low = w.low
    if low not in YES_WORDS and low not in NO_WORDS:
        return False
    before = text[max(0, w.start - 40) : w.start]
    if not _LEAD.search(before):
        return False
    if low != "yes" and low != "no" and not re.search(r"(?:^|[.!?\n])\s*[*\"']*\s*$", before):
        return False  # "correct", "negative": only when they open a sentence
    if _TAIL.match(text[w.end :]):
        return True
    if low == "yes":
        return True
    i = words.index(w)
    nxt = words[i + 1] if i + 1 < len(words) else None
    return low == "no" and nxt is not None and nxt.low in _PRONOUN_START \
        and not re.search(r"\w", text[w.end : nxt.start])


@dataclass(frozen=True)
class _Question:
    norms: frozenset[str]
    terms: tuple[Term, ...]
    concepts: frozenset[str]
    asks_normal: bool
    negated: bool  # "Was this image taken without motion artifact?": its claim holds a negation
    organs: frozenset[str] = frozenset()  # lung / heart / pleura, named by the question
    asks_other: bool = False  # "Are there other abnormalities besides the mass?"


@lru_cache(maxsize=4096)
def _question(question: str) -> _Question:
    qw = tokenize(_CHOICES.sub(" ", question))  # "Is the lesion ring enhancing? -yes/no"
    norms = frozenset(w.norm for w in content_words(qw) if w.norm not in _STOP or w.norm in _CLAIM_WORDS)
    concepts = frozenset(f.concept for f in _findings(question) if f.category != "denial")
    negated = sum(is_negation(w) for w in qw) % 2 == 1
    organs = frozenset(_ORGAN_WORDS[w.norm] for w in qw if w.norm in _ORGAN_WORDS)
    return _Question(norms, tuple(find_terms(qw)), concepts, bool(norms & _NORMAL_Q), negated, organs,
                     any(w.low == "other" for w in qw))


def _clause_place(text: str, ws: tuple[Word, ...], q: _Question) -> Place | None:
    if not ws:
        return None
    s, e = ws[0].start, ws[-1].end
    content = [w for w in content_words(ws) if (w.norm not in _STOP or w.norm in _CLAIM_WORDS) and not is_negation(w)]
    cues = tuple(w for w in ws if is_negation(w))
    if not q.asks_other and any(ws[k + 1].low == "other" for k, w in enumerate(ws[:-1]) if w in cues):
        return None  # "No other abnormality is seen": about what else there is, not the asked claim
    antonyms = tuple((w, min(_ANTONYMS[w.norm] & q.norms)) for w in ws
                     if _ANTONYMS.get(w.norm, frozenset()) & q.norms and w.norm not in q.norms
                     and not _WNL.match(text, max(0, w.start - 7))  # "within normal limits" is no antonym
                     and not _other_organ(ws, q))  # "the diaphragms are normal" says nothing of hyperinflated lungs
    c_terms = find_terms(ws)
    conflicts: list[tuple[Term, Term]] = []
    for qt in q.terms:
        if qt.category in ("number", "region") or any(t.value == qt.value for t in c_terms):
            continue
        conflicts += [(t, qt) for t in c_terms if t.category == qt.category and t.value != qt.value]
    overlap = any(w.norm in q.norms for w in content)
    # "No, it is not.", "Not seen here.": no content word, but a pronoun or a negation answers
    bare = not content and (bool(cues) or any(w.low in _BARE for w in ws))
    names = _names_concept(text, s, e, q)
    if q.concepts and not q.asks_normal and not names and not antonyms and NORMAL_STATEMENT.search(text, s, e) \
            and _same_organ(ws, q):
        # "the lungs are clear" answers "no" to "Is there evidence of pulmonary tuberculosis?"
        m = NORMAL_STATEMENT.search(text, s, e)
        # "the lungs are not clear" says yes; "clear, with no cavitary lesions" still says no
        normal_cues = tuple(w for w in cues if w.end <= m.start() and len(text[w.end : m.start()].split()) <= 2)
        neg = len(normal_cues) % 2 == 1
        return Place("clause", "yes" if neg else "no", s, e, ws, "normal", normal_cues)
    if q.asks_normal and q.organs and not antonyms and not overlap:
        denied = frozenset().union(*(_denials().get(o, frozenset()) for o in q.organs))
        found = [f for f in _findings(text) if s <= f.start and f.end <= e and f.category != "denial"
                 and f.concept in denied]
        if found:  # "there is a right lower lobe consolidation" answers "no" to "Are the lungs clear?"
            pol = "no" if any(f.positive for f in found) else "yes"
            return Place("clause", pol, s, e, ws, "finding", cues)
    if overlap or bare or antonyms or conflicts or names:
        if conflicts and cues:
            raise VqaReadError("ambiguous_answer", "the response negates a different value than the one asked about")
        all_cues = cues
        context = [w for w in ws for c in q.concepts if c in _CONTEXT_WORDS and _CONTEXT_WORDS[c].fullmatch(w.text)]
        cues = _governing(text, ws, cues, [w for w in content if w.norm in q.norms] + [w for w, _ in antonyms]
                          + [w for t, _ in conflicts for w in t.words] + context)
        backing = [c for c in all_cues if c not in cues]
        tail = None
        if backing:
            i = ws.index(backing[0])
            tail = ws[i - 1].start if backing[0].low == "no" and i > 0 and ws[i - 1].low == "with" else backing[0].start
        # a clause that restates the claim restates its negation too; "it is" only points at it
        neg = (len(cues) + bool(antonyms) + bool(conflicts) + (q.negated and not bare)) % 2 == 1
        how = "conflict" if conflicts else "antonym" if antonyms else "negation" if cues else "assertion"
        return Place("clause", "no" if neg else "yes", s, e, ws, how, cues, antonyms, tuple(conflicts), tail)
    return None


_SEEN = frozenset("seen present visible identified noted demonstrated evident appreciated detected observed "
                  "depicted shown".split())


def _governing(text: str, ws: tuple[Word, ...], cues: tuple[Word, ...], anchors: list[Word]) -> tuple[Word, ...]:
    """The negations that bear on the claim: those before its last word, and those after it that deny it
    ("is not seen", "does not appear", "is absent"); not a "no"/"without" that opens a phrase of its own
    after the claim ("the lungs appear normal with no signs of consolidation")."""
    if not anchors or not cues:
        return cues
    last = max(a.start for a in anchors)
    out = []
    for c in cues:
        i = ws.index(c)
        if c.start < last or c.low not in ("no", "without") or any(w.low in _SEEN for w in ws[i + 1 : i + 3]):
            out.append(c)
    return tuple(out)


# the organ a normal statement is about, by its words; a statement naming none ("No acute abnormality.",
# "Normal chest X-ray.") is about the whole image
_ORGAN_WORDS = {"heart": "heart", "cardiac": "heart", "cardiomediastinal": "heart", "mediastinum": "heart",
                "mediastinal": "heart", "silhouette": "heart", "pleura": "pleura", "pleural": "pleura",
                "costophrenic": "pleura", "lung": "lung", "field": "lung", "parenchyma": "lung",
                "diaphragm": "diaphragm", "hemidiaphragm": "diaphragm", "trachea": "trachea", "rib": "bone",
                "spine": "bone", "clavicle": "bone", "bone": "bone", "osseous": "bone"}
# what "the lungs are clear" denies beyond the report lexicon's own denials (parenchymal findings)
_CLEAR_LUNGS_ALSO = frozenset({"tuberculosis", "lung_lesion", "calcification", "emphysema", "fibrosis", "nodule",
                               "mass", "infiltration", "lung_opacity"})


def _other_organ(ws: tuple[Word, ...], q: _Question) -> bool:
    """The clause names organs and none is one the question names."""
    organs = {_ORGAN_WORDS[w.norm] for w in ws if w.norm in _ORGAN_WORDS}
    return bool(organs and q.organs and not organs & q.organs)


def _same_organ(ws: tuple[Word, ...], q: _Question) -> bool:
    """The normal statement is about the organ where the question's finding lies."""
    organs = {_ORGAN_WORDS[w.norm] for w in ws if w.norm in _ORGAN_WORDS}
    if not organs or organs & q.organs:
        return True
    denies = _denials()
    return any(q.concepts & denies.get(o, frozenset()) for o in organs)


@lru_cache(maxsize=1)
def _denials() -> dict[str, frozenset[str]]:
    nd = _extractor().lexicon.normal_denies
    return {"lung": frozenset(nd.get("lung", ())) | _CLEAR_LUNGS_ALSO,
            "heart": frozenset(nd.get("heart", ())) | frozenset(nd.get("cardiomediastinum", ())),
            "pleura": frozenset(nd.get("pleura", ()))}


# words a VQA answer uses for the asked finding that a report lexicon leaves to context ("there is no
# fluid" answers "Is there pleural effusion?")
_CONTEXT_WORDS = {"pleural_effusion": re.compile(r"\bfluids?\b", re.I)}


def _names_concept(text: str, start: int, end: int, q: _Question) -> bool:
    if not q.concepts:
        return False
    if any(c in _CONTEXT_WORDS and _CONTEXT_WORDS[c].search(text, start, end) for c in q.concepts):
        return True
    return any(f.concept in q.concepts and f.category != "denial" and start <= f.start and f.end <= end
               for f in _findings(text))


@lru_cache(maxsize=1)
def _extractor():
    from clinical.extract.rules import RuleExtractor

    return RuleExtractor()


@lru_cache(maxsize=16384)
def _findings(text: str) -> tuple:
    from clinical.findings import findings_from_extraction

    ex = _extractor()
    return tuple(findings_from_extraction(ex.extract(text), ex.lexicon).findings)
