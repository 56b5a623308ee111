"""State one yes/no answer in every place a response gives it, in the response's own words.

The fix of a wrong answer and the injection into a right one are the same operation: every place
(``places.py``) whose polarity is not the target is changed. A yes/no word is swapped in its case
("No," -> "Yes,"); a clause is turned at its negation ("there is no mass" -> "there is a mass"), its
antonym ("abnormal" -> "normal") or its other value ("a CT" -> "an MRI"), or gets one ("the heart is
enlarged" -> "the heart is not enlarged"). A clause that cannot carry the target in its own words
(a normal statement, "the lungs are clear", against a present finding) is removed at the clause
level, with its separator, so the sentence stays whole. When nothing would be left to answer, the
wording truly cannot carry the gold: ``None`` with the reason.
"""

from __future__ import annotations

import re

from editors.base import SpanEdit
from editors.vqa.places import APPOSITIVES, NORMAL_STATEMENT, Place, YesNoReading
from editors.vqa.text import _plural, _vowel_sound, display, match_case, replace_words
from editors.vqa.words import _ARTICLES, _AUX, _BE, _DET_VERBS, _VERBS, EDITOR, ERROR_TYPE, Word, tokenize


def state_answer(text: str, reading: YesNoReading, question: str, target: str) -> tuple[list[SpanEdit] | None, str]:
    """(edits making every place of ``reading`` say ``target``, "") or (None, why it cannot)."""
    edits: list[SpanEdit] = []
    kept = [p for p in reading.places if p.polarity == target]
    removed: list[Place] = []
    for p in reading.wrong(target):
        if p.kind == "token":
            w = p.words[0]
            new = _TOKEN_SWAP.get(w.low, "Yes" if target == "yes" else "No")
            edits.append(SpanEdit(w.start, w.end, match_case(w.text, new, w.text.islower()), ERROR_TYPE, EDITOR))
            kept.append(p)
            continue
        body = _flip_clause(text, p, question)
        if body is not None:
            edits.extend(body)
            detail = _elaboration(text, p, body)
            if detail is not None and any(q is not p and detail[0] <= q.start < detail[1] for q in reading.places):
                detail = None  # ", consistent with cardiomegaly" is a place of its own, changed on its own
            if detail is not None:
                # "No, there is no free air ..., which is concerning for perforation": what described the
                # old answer goes with it (a denied finding has no size, site or consequence; a finding
                # now stated is not "reassuring")
                edits.append(SpanEdit(*detail, "", ERROR_TYPE, EDITOR))
            elif p.tail is not None and all(e.end <= p.tail for e in body):
                # "the lungs do not appear normal with no signs of X": the phrase that backed the old answer goes
                start = p.tail
                while start > 0 and text[start - 1] in " ,":
                    start -= 1
                edits.append(SpanEdit(start, p.end, "", ERROR_TYPE, EDITOR))
            kept.append(p)
        else:
            removed.append(p)
    if removed and not kept:
        # nothing else answers: a normal statement is negated instead ("The lungs are not clear.")
        negated = [_make_negative(text, list(p.words)) if p.how == "normal" and target == "yes"
                   and any(w.low in _AUX or w.low.rstrip("s") in _VERBS for w in p.words) else None
                   for p in removed]
        if any(e is None for e in negated):
            return None, (f"its only answer, {text[removed[0].start : removed[0].end]!r}, cannot say "
                          f"{target!r} in its own words and removing it leaves no answer")
        edits.extend(e for es in negated for e in es)
        removed = []
    if removed:
        for p in removed:
            cut = _remove_clause(text, p)
            if cut is None:
                return None, f"the clause {text[p.start : p.end]!r} cannot say {target!r} and cannot be removed"
            edits.append(cut)
    edits.sort(key=lambda e: (e.start, e.end))
    for a, b in zip(edits, edits[1:], strict=False):
        if b.start < a.end:
            return None, "two places of the answer overlap"
    return edits, ""


# what opens a phrase that describes the finding just stated: ", which is concerning for ...", ", 4 cm
# above the carina", ", measuring 2 cm", ", in the right mainstem bronchus"
_ELABORATION = re.compile(r",\s*(?:which|that|suggesting|suggestive|consistent|compatible|indicating|indicative|likely|"
                          r"probably|possibly|representing|concerning|suspicious|worrisome|raising|may|could|so|"
                          r"therefore|thus|hence|measuring|causing|blunting|obscuring|with|in|at|above|below|"
                          r"within|along|involving|including|extending|\d)\b[^.;!?]*", re.I)


# "an endotracheal tube is present with the tip above the carina": the tip goes when the tube does
_DETAIL_AFTER_SEEN = re.compile(r"\b(?:present|seen|noted|identified|visible|place)(\s+(?:with|measuring|"
                                r"extending|terminating|projecting)\b[^.;!?,]*)", re.I)


def _elaboration(text: str, p: Place, body: list[SpanEdit]) -> tuple[int, int] | None:
    """The span of a describing phrase right after the flipped words and before the sentence ends."""
    after = max(e.end for e in body)
    end = len(text)
    for c in ".;!?\n":
        k = text.find(c, after)
        if k >= 0:
            end = min(end, k)
    m = _DETAIL_AFTER_SEEN.search(text, after, end)
    if m is not None and m.end() == end and "," not in text[after : m.start(1)]:
        return m.start(1), m.end(1)
    m = _ELABORATION.search(text, after, end)
    if m is None or m.end() != end or text[after : m.start()].count(",") or not text[after : m.start()].strip(" ,"):
        return None
    return m.start(), m.end()


# a yes/no word is swapped for its own opposite: "Affirmative." -> "Negative."
_TOKEN_SWAP = {"affirmative": "Negative", "negative": "Affirmative", "correct": "Incorrect", "incorrect": "Correct",
               "true": "False", "false": "True"}
_SEP_AFTER = re.compile(r",?\s+(?:and|but)\s+(?=\w)", re.I)
_SEP_BEFORE = re.compile(r"(?:,?\s+(?:and|but|which|while|however)|[,;:]|\s+)\s*$", re.I)


def _remove_clause(text: str, p: Place) -> SpanEdit | None:
    """Remove the clause p with the separator that joins it, keeping the sentence's end."""
    s, e = p.start, p.end
    line = re.search(r"(?:^|\n)[ \t]*(?:[-*•][ \t]*)?$", text[:s])
    tail = re.match(r"[ \t.]*\n", text[e:])
    if line and tail:  # "- Costophrenic angles: sharp" is a line of a list: the line goes, bullet and all
        return SpanEdit(line.start() + (text[line.start()] == "\n"), e + tail.end(), "", ERROR_TYPE, EDITOR)
    sent_start = max(text.rfind(c, 0, s) for c in ".!?\n") + 1
    head = text[sent_start:s]
    end_punct = re.match(r"[.!?]*", text[e:]).group()
    after = _SEP_AFTER.match(text, e)
    if after:  # "the lungs are clear and there is ...": the clause goes with the "and" after it
        nxt = after.end()
        if not head.strip() and nxt < len(text):
            return SpanEdit(s, nxt + 1, text[nxt].upper(), ERROR_TYPE, EDITOR)
        return SpanEdit(s, nxt, "", ERROR_TYPE, EDITOR)
    if not head.strip():  # the clause opens its sentence: remove the sentence with its end and the next space
        e2 = e + len(end_punct)
        while e2 < len(text) and text[e2] in " \t":
            e2 += 1
        if not text[e2:].strip() and sent_start > 0:  # the last sentence: take the space before it
            s2 = sent_start
            while s2 > 0 and text[s2 - 1] in " \t":
                s2 -= 1
            return SpanEdit(s2, e2, "", ERROR_TYPE, EDITOR)
        return SpanEdit(sent_start, e2, "", ERROR_TYPE, EDITOR)
    m = _SEP_BEFORE.search(text, 0, s)
    if m is None or m.start() < sent_start:
        return None
    return SpanEdit(m.start(), e, "", ERROR_TYPE, EDITOR)


def _flip_clause(text: str, r: Place, question: str) -> list[SpanEdit] | None:
    """Edits giving the clause the other polarity, at its negation, antonym or other value."""
    ws = list(r.words)
    if ws[0].low in APPOSITIVES or (ws[0].low == "most" and len(ws) > 1 and ws[1].low in APPOSITIVES):
        return None  # ", consistent with cardiomegaly": an appositive that restates is removed, not negated
    lower_text = not any(c.isupper() for c in text)
    if r.antonyms and not r.cues:  # "the lungs are abnormal" -> "the lungs are normal"
        w, q = r.antonyms[0]
        q = _ADJECTIVE.get(q, q)  # "Is there an abnormality?": "the lung appears abnormal"
        end = w.end
        side = re.match(r"\s+to (?:the )?(?:left|right)(?: side)?\b", text[w.end :], re.I)
        if side and q == "midline":  # "deviated to the right" -> "midline"
            end += side.end()
        return [SpanEdit(w.start, end, match_case(w.text, _word_as_written(question, q), lower_text),
                         ERROR_TYPE, EDITOR)]
    if r.conflicts:  # "this is a CT" -> "this is an MRI"
        t, qt = r.conflicts[0]
        idx = [i for i, w in enumerate(ws) if w in t.words]
        return [replace_words(text, ws, idx[0], idx[-1], display(qt.value, t.words[0].text, lower_text))]
    if r.cues:
        if r.polarity == "no" and NORMAL_STATEMENT.search(text, r.start, r.cues[0].start):
            return None  # "the lungs appear clear with no consolidation": "clear" would stay beside the finding
        return _make_positive(text, ws, r.cues[0])
    if r.how == "normal":
        return None  # "the lungs are clear" is removed, not turned into "not clear"
    return _make_negative(text, ws)


_ADJECTIVE = {"abnormality": "abnormal"}


def _word_as_written(question: str, norm: str) -> str:
    for w in tokenize(question):
        if w.norm == norm:
            return w.text.lower()
    return norm


def _make_negative(text: str, ws: list[Word]) -> list[SpanEdit] | None:
    def ins(pos: int, s: str) -> list[SpanEdit]:
        return [SpanEdit(pos, pos, s, ERROR_TYPE, EDITOR)]

    def swap(w: Word, s: str) -> list[SpanEdit]:
        return [SpanEdit(w.start, w.end, match_case(w.text, s), ERROR_TYPE, EDITOR)]

    for i, w in enumerate(ws):
        nxt = ws[i + 1] if i + 1 < len(ws) else None
        low = w.low
        if low == "there" and nxt is not None and nxt.low in _BE:
            after = ws[i + 2] if i + 2 < len(ws) else None
            if after is None:
                return ins(nxt.end, " not")
            if after.low in _ARTICLES:
                return swap(after, "no")
            return ins(after.start, "no ")
        if low == "can":
            return swap(w, "cannot")
        if low in ("has", "have", "had") and nxt is not None and nxt.low in _ARTICLES:
            return swap(nxt, "no")
        if low in _AUX:
            return ins(w.end, " not")
        base = low[:-1] if low.endswith("s") and low[:-1] in _VERBS else low if low in _VERBS else None
        if base:
            if base in _DET_VERBS and nxt is not None and nxt.low in _ARTICLES:
                return swap(nxt, "no")
            aux = "does" if base != low else "do"
            return [SpanEdit(w.start, w.end, match_case(w.text, f"{aux} not {base}"), ERROR_TYPE, EDITOR)]
        if low == "with":
            return swap(w, "without")
        if low == "present":
            return swap(w, "absent")
    # a fragment ("Yes, pleural effusion."): "no" before its first word
    first = ws[0] if ws else None
    if first is None:
        return None
    if first.low in ("a", "an", "the"):
        return swap(first, "no")
    if first.text[:1].isupper() and not first.text.isupper() and not text[: first.start].strip():
        return [SpanEdit(first.start, first.start + 1, "No " + first.text[0].lower(), ERROR_TYPE, EDITOR)]
    return ins(first.start, "no ")


def _make_positive(text: str, ws: list[Word], cue: Word) -> list[SpanEdit] | None:
    i = ws.index(cue)
    prev = ws[i - 1] if i > 0 else None
    nxt = ws[i + 1] if i + 1 < len(ws) else None
    low = cue.low

    def delete() -> list[SpanEdit]:
        """Remove the cue and one space; capitalise the next word when the cue began the sentence."""
        if nxt is not None and text[cue.end : nxt.start] == " ":
            if cue.text[:1].isupper() and not (prev and text[prev.end : cue.start].strip() == ""):
                return [SpanEdit(cue.start, nxt.start + 1, nxt.text[:1].upper(), ERROR_TYPE, EDITOR)]
            return [SpanEdit(cue.start, nxt.start, "", ERROR_TYPE, EDITOR)]
        if prev is not None and text[prev.end : cue.start] == " ":
            return [SpanEdit(prev.end, cue.end, "", ERROR_TYPE, EDITOR)]
        return None

    if low == "no":
        if nxt is None:
            return None
        if nxt.norm in ("evidence", "sign") or (prev is not None and prev.low in ("are", "were")) or _plural(nxt.text) \
                or _mass_noun(ws, i + 1):
            return delete()
        if prev is not None and prev.low in ("is", "was", "has", "had", "with", "shows", "show", "demonstrates",
                                             "reveals", "contains"):
            return [SpanEdit(cue.start, cue.end, match_case(cue.text, "an" if _vowel_sound(nxt.text) else "a"),
                             ERROR_TYPE, EDITOR)]
        return delete()
    if low == "not":
        if prev is not None and prev.low in ("do", "does") and nxt is not None and nxt.low in _SEE_VERBS \
                and text[prev.end : cue.start] == " " and text[cue.end : nxt.start] == " ":
            # "I do not see any X" -> "I see a X"; "the image does not show X" -> "the image shows X"
            verb = nxt.text if prev.low == "do" else _third_person(nxt.text)
            return [SpanEdit(prev.start, nxt.end, match_case(prev.text, verb), ERROR_TYPE, EDITOR)] \
                + _any_to_article(text, ws, i + 2)
        return delete() + _any_to_article(text, ws, i + 1) if delete() else None
    if low in ("don't", "doesn't") and nxt is not None and nxt.low in _SEE_VERBS and text[cue.end : nxt.start] == " ":
        verb = nxt.text if low == "don't" else _third_person(nxt.text)  # "I don't see a mass" -> "I see a mass"
        return [SpanEdit(cue.start, nxt.end, match_case(cue.text, verb), ERROR_TYPE, EDITOR)] \
            + _any_to_article(text, ws, i + 2)
    if low == "cannot":
        return [SpanEdit(cue.start, cue.end, match_case(cue.text, "can"), ERROR_TYPE, EDITOR)]
    if low.endswith("n't"):
        base = {"can't": "can", "won't": "will"}.get(low, low[:-3])
        return [SpanEdit(cue.start, cue.end, match_case(cue.text, base), ERROR_TYPE, EDITOR)]
    swaps = {"without": "with", "absent": "present", "negative": "positive", "lacks": "has",
             "absence": "presence"}
    if low in swaps:
        return [SpanEdit(cue.start, cue.end, match_case(cue.text, swaps[low]), ERROR_TYPE, EDITOR)]
    return None


_SEE_VERBS = frozenset("see show demonstrate reveal contain have display exhibit depict appear look suggest "
                       "involve include indicate".split())


def _third_person(verb: str) -> str:
    low = verb.lower()
    if low == "have":
        return verb[:2] + "s"
    if low.endswith(("s", "sh", "ch", "x")):
        return verb + "es"
    return verb + "s"


def _any_to_article(text: str, ws: list[Word], k: int) -> list[SpanEdit]:
    """After a removed negation, "any X" -> "a X" (or "X" before a plural) within the next three words."""
    for j in range(k, min(k + 3, len(ws))):
        w = ws[j]
        if w.low == "any" and j + 1 < len(ws):
            nxt = ws[j + 1]
            if _plural(nxt.text) or nxt.low in ("evidence", "signs"):
                return [SpanEdit(w.start, nxt.start, "", ERROR_TYPE, EDITOR)]
            return [SpanEdit(w.start, w.end, match_case(w.text, "an" if _vowel_sound(nxt.text) else "a"),
                             ERROR_TYPE, EDITOR)]
    return []


# nouns written without an article ("there is free air", not "there is a free air")
_MASS_NOUNS = frozenset("fluid gas edema fat".split())
_AFTER_NOUN = frozenset("in under at of within on around along is are was were seen present noted identified".split())


def _mass_noun(ws: list[Word], k: int) -> bool:
    """ws[k] starts a noun phrase written without an article: "free air", "edema in ..." (not "blood clot")."""
    if ws[k].low == "free":
        return True
    nxt = ws[k + 1] if k + 1 < len(ws) else None
    return ws[k].low in _MASS_NOUNS and (nxt is None or nxt.low in _AFTER_NOUN)
