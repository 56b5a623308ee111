"""A structural fluency checker for edited report sentences, sharing no code with the editors.

Why its own module, on plain regular expressions: the editors must not grade their own output.
This reads only the finished text and asks what a radiologist would notice at a glance: a sentence
that starts with a preposition or conjunction or stops on a function word, a negation put in front
of a copula clause ("no heart is mildly enlarged"), a unit that lost its number ("mm nodular
density"), doubled words, two verbs in a row ("are appear"), agreement of "there is/are", list
numbers with nothing after them ("1. no 2."), and empty sentences.

Only sentences the edit changed are checked: the policy's own untouched words are its style.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*|\d+(?:\.\d+)?(?:mm|cm)?")
_BAD_START = {"and", "or", "but", "nor", "with", "of", "which", "that", "than", "also", "is", "are", "was", "were",
              "be", "has", "have"}
# "In the left base, there is ..." is English; "in the left base ." alone is a cut fragment
_PREP_START = {"in", "at", "to", "for", "by", "on", "from", "as", "without", "within", "over"}
_BAD_END = {"the", "a", "an", "and", "or", "nor", "of", "in", "at", "to", "for", "by", "on", "from", "with",
            "without", "than", "that", "which", "as", "is", "are", "was", "were", "be", "no", "not", "there",
            "its", "their", "very", "both", "any", "this", "these"}
# "no pneumothorax is seen": a negated subject with a passive verb of seeing is fine
_SEEN = ("seen", "identified", "noted", "present", "demonstrated", "visualized", "visualised", "appreciated",
         "evident", "detected", "appreciable", "shown", "observed", "found", "apparent", "definitely", "clearly",
         "evidenced", "suggested", "excluded")
_NEG_COPULA = re.compile(r"\b(no)\s+((?:[a-z-]+\s+){0,4}?)(is|are|was|were|appears?|remains?)\s+(?!"
                         + "|".join(_SEEN) + r"\b)([a-z]+)", re.IGNORECASE)
_NEG_DET = re.compile(r"\b(no)\s+(the|a|an|this|these|those|is|are|there|no|not)\b", re.IGNORECASE)
_VERB_VERB = re.compile(r"\b(is|are|was|were)\s+(appear|appears|is|are|was|were|seem|seems|show|shows|"
                        r"demonstrate|demonstrates|reveal|reveals)\b", re.IGNORECASE)
# a cut that leaves a preposition or article before a verb: "moderate - to - has increased"
_FUNCTION_VERB = re.compile(r"\b(?:to\s*(?:-\s*)?(?:is|are|was|were|has|had)|(?:of|the|a|an|with|in|at|for|by|from|"
                            r"than|on)\s*(?:-\s*)?(?:is|are|was|were|has|have|had))\b", re.IGNORECASE)
_THERE_ARE_A = re.compile(r"\bthere\s+are\s+(a|an|one)\b", re.IGNORECASE)
_THERE_IS_MANY = re.compile(r"\bthere\s+is\s+(multiple|several|many|numerous|bilateral\s+\w+s|two|three)\b",
                            re.IGNORECASE)
_LIST_ORPHAN = re.compile(r"^\s*(\d+\s*[.)])?\s*(no|not|none)?\s*[.)]?\s*$", re.IGNORECASE)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans: ends at '.', '?', '!' not inside a number, at ';' and at blank lines."""
    spans: list[tuple[int, int]] = []
    start = 0
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        end_here = False
        if c in ".?!;":
            if c == "." and 0 < i < n - 1 and text[i - 1].isdigit() and text[i + 1].isdigit():
                end_here = False
            elif c == "." and _is_list_number(text, start, i):
                end_here = False
            else:
                end_here = True
        elif c == "\n" and i + 1 < n and text[i + 1] == "\n":
            end_here = True
        if end_here:
            if text[start:i + 1].strip():
                spans.append((start, i + 1))
            start = i + 1
        i += 1
    if text[start:].strip():
        spans.append((start, n))
    return [(s + (len(text[s:e]) - len(text[s:e].lstrip())), e) for s, e in spans]


def _is_list_number(text: str, start: int, i: int) -> bool:
    """'1.' opening an impression item is not a sentence end."""
    head = text[start:i].strip()
    return head.isdigit() and len(head) <= 2 and i + 1 < len(text) and text[i + 1] == " " and \
        bool(text[i + 2:i + 3].strip())


def sentence_problems(sentence: str) -> list[str]:
    """What is structurally wrong with one sentence, as short reasons (empty when it reads fine)."""
    s = sentence.strip()
    body = re.sub(r"^\s*(\d+\s*[.)]|[-*•])\s*", "", s)
    body = re.sub(r"^(impression|findings|conclusion)\s*:\s*", "", body, flags=re.IGNORECASE)
    body = re.sub(r"^\s*(\d+\s*[.)])\s*", "", body).rstrip(" .;!?")
    words = [w.lower() for w in _WORD.findall(body)]
    out: list[str] = []
    if _LIST_ORPHAN.match(s) or not words or all(w.isdigit() or w in ("no", "not", "none") for w in words):
        return ["empty sentence"]
    if words[0] in _BAD_START or (words[0] in _PREP_START and "," not in body):
        out.append(f"starts with '{words[0]}'")
    if words[-1] in _BAD_END:
        out.append(f"ends with '{words[-1]}'")
    if re.search(r"[,:]\s*$", body) or re.search(r",\s*,|\(\s*\)", body):
        out.append("dangling punctuation")
    m = _NEG_COPULA.search(body)
    if m and not _negated_subject_ok(m):
        out.append(f"negation before a copula clause: '{m.group(0)}'")
    if re.search(r"\bno\b[^.]*,\s*(evidence|signs?) of\b", body, re.IGNORECASE):
        out.append("list item 'evidence of' outside its negation")
    m = _NEG_DET.search(body)
    if m:
        out.append(f"negation before '{m.group(2)}'")
    if any(w in ("mm", "cm") and (k == 0 or not _is_number(words[k - 1])) for k, w in enumerate(words)):
        out.append("measurement without its number")
    for a, b in zip(words, words[1:], strict=False):
        if a == b and a not in ("xxxx", "x") and not a.isdigit():
            out.append(f"doubled word '{a}'")
            break
    m = _VERB_VERB.search(body)
    if m:
        out.append(f"two verbs: '{m.group(0)}'")
    m = _FUNCTION_VERB.search(body)
    if m:
        out.append(f"function word before a verb: '{m.group(0)}'")
    if _THERE_ARE_A.search(body) or _THERE_IS_MANY.search(body):
        out.append("there is/are agreement")
    return out


def _is_number(w: str) -> bool:
    return bool(re.fullmatch(r"\d+(\.\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|few|several", w))


def _negated_subject_ok(m: re.Match) -> bool:
    """ "no pleural effusion is seen" passes; "no heart is mildly enlarged" does not."""
    after = m.group(4).lower()
    return after in _SEEN or after in {"noted", "there", "identified"}


def changed_sentences(before: str, after: str) -> list[str]:
    """Sentences of `after` that are not, word for word, sentences of `before`."""
    old = {_norm(before[s:e]) for s, e in split_sentences(before)}
    return [after[s:e] for s, e in split_sentences(after) if _norm(after[s:e]) not in old]


def edit_problems(before: str, after: str) -> list[str]:
    """Problems in the sentences an edit made, each as 'sentence: reason'."""
    out = []
    for sent in changed_sentences(before, after):
        for p in sentence_problems(sent):
            out.append(f"{sent.strip()!r}: {p}")
    if re.search(r"\S\s{3,}\S", after) and not re.search(r"\S\s{3,}\S", before):
        out.append("run of spaces")
    return out


def _norm(s: str) -> str:
    return " ".join(s.lower().split())
