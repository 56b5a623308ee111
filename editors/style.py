"""Write inserted text the way the response writes (casing, "word ." spacing, commas, de-id tokens).

A missed finding copied from the reference must read like the policy's own words, or the
chosen side teaches style instead of content.
"""

from __future__ import annotations

import re

from editors.base import Style


def restyle(fragment: str, style: Style) -> str:
    s = fragment.strip().rstrip(".").strip()
    s = re.sub(r"\bX{2,}\b", style.deid_token, s, flags=re.IGNORECASE)
    if style.lower:
        s = s.lower()
    elif s:
        s = s[0].upper() + s[1:]
    if not style.commas:
        s = re.sub(r"\s*,\s*", " ", s)
    elif style.spaced_punct:
        s = re.sub(r"\s*,\s*", " , ", s)
    return re.sub(r"\s+", " ", s).strip()


def sentence(fragment: str, style: Style) -> str:
    """A full sentence in the response's style, without surrounding whitespace."""
    body = restyle(fragment, style)
    return f"{body} ." if style.spaced_punct else f"{body}."


def match_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word
