"""Responses that are not one answer to edit: a model that kept going, looped, or declined.

A chosen side built from several reports in a row would teach the policy to run on; one built from a
sentence repeated in a loop teaches nothing; one that declines to read the image ("I'm unable to
interpret medical images") is no report to correct. Such a response is a reject with its reason.
"""

from __future__ import annotations

import re


def repeats(text: str) -> bool:
    """One sentence of three or more words said three times or more (headers aside): a generation loop."""
    seen: dict[str, int] = {}
    for sent in re.split(r"(?<=[.!?])\s+", text):
        sent = re.sub(r"^\s*(findings|impression)\s*:\s*", "", sent, flags=re.IGNORECASE)
        key = " ".join(sent.lower().split())
        if len(key.split()) >= 3:
            seen[key] = seen.get(key, 0) + 1
            if seen[key] >= 3:
                return True
    return False


def several_reports(text: str) -> bool:
    """Two or more blocks of three or more sentences separated by blank lines: a model that kept going."""
    blocks = [b for b in re.split(r"\n\s*\n", text) if b.strip()]
    return sum(1 for b in blocks if len(re.findall(r"[.!?](\s|$)", b)) >= 3) >= 2


_REFUSAL = re.compile(r"\b(?:I(?:'m| am) (?:unable|not able) to|I can(?:not|'t) (?:analy[sz]e|interpret|view|see|provide "
                      r"a (?:diagnosis|medical))|as an AI\b|I do not have the ability)", re.IGNORECASE)


def refuses(text: str) -> bool:
    """The response declines to read the image (a chat model's refusal), wherever it says so."""
    return bool(_REFUSAL.search(text))
