"""Text structure and writing of VQA answers: sentences, clauses, language, and values written in the
response's own case and style (acronyms, articles, plurals)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from editors.base import SpanEdit
from editors.vqa.words import (
    _DISPLAY,
    _DISPLAY_OF,
    _NEG_WORDS,
    _NUMBER_WORDS,
    _UNCERTAIN,
    EDITOR,
    ERROR_TYPE,
    Word,
    _is_number,
    tokenize,
)

# ------------------------------------------------------------------------------------ text structure


def sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans (end includes the final punctuation); a decimal point does not end a sentence."""
    out, start = [], 0
    for m in re.finditer(r"(?<!\d)[.!?]+(?!\d)|\n+", text):
        if text[start : m.end()].strip():
            out.append((start, m.end()))
        start = m.end()
    if text[start:].strip():
        out.append((start, len(text)))
    return out


_CLAUSE_BREAK = re.compile(r"[,;:()]|\b(?:but|however|although|though|whereas|while)\b", re.I)


def clauses(text: str, start: int, end: int) -> list[tuple[int, int]]:
    out, pos = [], start
    for m in _CLAUSE_BREAK.finditer(text, start, end):
        if text[pos : m.start()].strip():
            out.append((pos, m.start()))
        pos = m.end()
    if text[pos:end].strip():
        out.append((pos, end))
    return out


def _within(words: Sequence[Word], span: tuple[int, int]) -> list[Word]:
    return [w for w in words if span[0] <= w.start and w.end <= span[1]]


def is_negation(w: Word) -> bool:
    return w.low in _NEG_WORDS or w.low.endswith("n't")


def uncertain(text: str) -> bool:
    return bool(_UNCERTAIN.search(text))


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def language_of(text: str) -> str:
    """"en" for Latin-script text, "zh" (or "other") otherwise; answers are edited in English only."""
    if _CJK.search(text):
        return "zh"
    letters = [c for c in text if c.isalpha()]
    if letters and sum(c.isascii() for c in letters) < 0.8 * len(letters):
        return "other"
    return "en"


# ---------------------------------------------------------------------------------- writing values


def display(norm_value: str, template: str = "", lower_text: bool = False) -> str:
    """A value as it should appear in the response: acronyms upper-case, capitalised like ``template``."""
    out = _DISPLAY_OF.get(norm_value, norm_value)
    if _is_number(norm_value) and template and not template[:1].isdigit():
        out = _NUMBER_WORDS.get(norm_value, norm_value)
    if len(template) == 1 and template.isupper() and norm_value in ("left", "right"):
        return norm_value[0].upper()  # "R" -> "L": the response abbreviates sides
    if out != norm_value and any(c.isupper() for c in out) and not lower_text:
        return out  # a written form of its own ("X-ray", "CT"): not re-cased after the template
    return match_case(template, out, lower_text)


def gold_display(gold_text: str) -> str:
    """The gold answer written mid-sentence: "Right Upper Lobe" -> "right upper lobe", "ct" -> "CT"."""
    parts = []
    for piece in re.split(r"(\s+)", gold_text.strip().rstrip(".")):
        ws = tokenize(piece)
        if len(ws) == 1 and ws[0].text == piece and ws[0].norm in _DISPLAY:
            parts.append(_DISPLAY[ws[0].norm])
        elif piece.isupper() and len(piece) <= 5:
            parts.append(piece)
        else:
            parts.append(piece.lower())
    return "".join(parts)


def match_case(template: str, word: str, lower_text: bool = False) -> str:
    if lower_text:
        return word.lower()
    if not template:
        return word
    if template.isupper() and len(template) > 1 and not word.isupper():
        return word.upper() if len(word) <= 5 else word[:1].upper() + word[1:]
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    if word.isupper() or any(c.isupper() for c in word[1:]):
        return word  # an acronym stays one
    return word[:1].lower() + word[1:]


def _vowel_sound(word: str) -> bool:
    if not word:
        return False
    if word[:1].isdigit():
        return word.startswith(("8", "11", "18"))
    if (word.isupper() and len(word) <= 5) or (len(word) > 1 and word[0].isupper() and not word[1].islower()):
        return word[0] in "AEFHILMNORSX"  # "an MRI", "an X-ray": the letter's name
    low = word.lower()
    if low.startswith(("uni", "use", "usu", "one", "eu", "ur")):
        return False
    return low[0] in "aeiou" or low.startswith(("hour", "honest"))


def _plural(word: str) -> bool:
    low = word.lower()
    return len(low) > 3 and low.endswith("s") and not low.endswith(("ss", "us", "is", "ous"))


_AGREE = {"is": "are", "are": "is", "was": "were", "were": "was"}


def replace_words(text: str, words: Sequence[Word], first: int, last: int, replacement: str) -> SpanEdit:
    """Replace words[first..last] by ``replacement``, fixing an "a"/"an" just before it and an
    "is"/"are" just after it ("the lungs are" -> "the heart is")."""
    edit = _replace_words(text, words, first, last, replacement)
    nxt = words[last + 1] if last + 1 < len(words) else None
    old_head, new_head = words[last].text, (replacement.split() or [""])[-1]
    if nxt is not None and nxt.low in _AGREE and text[words[last].end : nxt.start] == " " \
            and _plural(old_head) != _plural(new_head) and (nxt.low in ("are", "were")) == _plural(old_head):
        return SpanEdit(edit.start, nxt.end, edit.replacement + " " + match_case(nxt.text, _AGREE[nxt.low]),
                        edit.error_type, edit.editor)
    return edit


def _replace_words(text: str, words: Sequence[Word], first: int, last: int, replacement: str) -> SpanEdit:
    start, end = words[first].start, words[last].end
    if first > 0 and words[first - 1].low in ("a", "an") and text[words[first - 1].end : start] == " ":
        art = words[first - 1]
        head = replacement.split()[0] if replacement.split() else ""
        if _plural(replacement.split()[-1] if replacement.split() else ""):
            new_art = ""
        else:
            new_art = "an" if _vowel_sound(head) else "a"
        if new_art != art.low:
            new_art = match_case(art.text, new_art) if new_art else ""
            if not new_art and art.text[:1].isupper():
                replacement = replacement[:1].upper() + replacement[1:]
            return SpanEdit(art.start, end, (new_art + " " if new_art else "") + replacement, ERROR_TYPE, EDITOR)
    return SpanEdit(start, end, replacement, ERROR_TYPE, EDITOR)


