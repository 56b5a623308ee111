"""Final touches on a verified edit list, before it is applied: what a radiologist would tidy.

Why a module of its own: these do not fix an error, they keep a fix from leaving debris behind: a
recommendation about a finding that just went, one clause inserted twice, two words glued together.
The text stage re-verifies the result, so each touch is safe to try.
"""

from __future__ import annotations

import re

from editors.base import EditContext, SpanEdit
from editors.clauses import in_sentence, sentence_removal

_FOLLOW_UP = re.compile(r"^\s*(this|these|it|which|findings? (is|are))\b|recommend|consider|suggest|further (evaluation|"
                        r"characteri|assessment)|follow[- ]?up|correlat|notification|if there|xxxx for better",
                        re.IGNORECASE)


def drop_orphans(edits: list[SpanEdit], ctx: EditContext) -> list[SpanEdit]:
    """A recommendation or "this may represent ..." left right after the sentence it was about goes
    with it ("a noncontrast CT is indicated for further characterization" of a removed nodule)."""
    removed = [e for e in edits if not e.replacement and any(e.start <= a and b <= e.end for a, b in ctx.sentences)]
    if not removed:
        return edits
    out = list(edits)
    sents = ctx.sentences
    for e in removed:
        k = next((i for i, (a, _b) in enumerate(sents) if a >= e.end - 1 and a >= e.start), None)
        while k is not None and k < len(sents):
            a, b = sents[k]
            if in_sentence(ctx, (a, b)) or not _FOLLOW_UP.search(ctx.text[a:b]) or \
                    any(x.start < b and a < x.end for x in out):
                break
            s0, e0 = sentence_removal(ctx, (a, b))
            # text written inside it, or a sentence put in its place, keeps it; one inserted at its edge does not
            touching = [x for x in out if x.start <= e0 and s0 <= x.end and (x.replacement or x.start == x.end)
                        and not (x.start == x.end and x.start in (s0, e0))]
            if touching:
                break  # an edit that writes text sits right there: leave the sentence
            joined = [x for x in out if x.start <= e0 and s0 <= x.end]
            for x in joined:
                out.remove(x)
                s0, e0 = min(s0, x.start), max(e0, x.end)
            out.append(SpanEdit(s0, e0, "", e.error_type, e.editor))
            k += 1
    return sorted(out, key=lambda x: (x.start, x.end))


_CONNECTIVE = re.compile(r"(however|also|additionally|in addition|furthermore|moreover|but)\b\s*,?\s*", re.IGNORECASE)


def drop_connectives(edits: list[SpanEdit], ctx: EditContext) -> list[SpanEdit]:
    """A sentence that opened on "however" or "also" loses the word when the sentence it answered goes
    ("lungs are free of infiltrates . however in the left lower lobe ..." without the first)."""
    out = list(edits)
    for e in edits:
        if e.replacement or not any(e.start <= a and b <= e.end for a, b in ctx.sentences):
            continue
        nxt = next(((a, b) for a, b in ctx.sentences if a >= e.end and ctx.text[e.end:a].strip() == ""), None)
        if nxt is None or any(x.start < nxt[1] and nxt[0] < x.end or x.start == nxt[0] for x in out):
            continue
        m = _CONNECTIVE.match(ctx.text, nxt[0])
        if m is None or m.end() >= nxt[1]:
            continue
        first = ctx.text[m.end():m.end() + 1]
        cap = first.upper() if ctx.text[nxt[0]].isupper() else first
        out.append(SpanEdit(nxt[0], m.end() + 1, cap, e.error_type, e.editor))
    return sorted(out, key=lambda x: (x.start, x.end))


def dedupe_inserted(edits: list[SpanEdit]) -> list[SpanEdit]:
    """A clause inserted in one place and the whole sentence holding it in another: the clause goes."""
    texts = [e.replacement.strip().rstrip(" .") for e in edits]
    out = []
    for k, e in enumerate(edits):
        t = texts[k]
        if t and e.editor == "insertion" and any(j != k and t != u and t in u for j, u in enumerate(texts)):
            if e.start < e.end:
                out.append(SpanEdit(e.start, e.end, "", e.error_type, e.editor))
            continue
        out.append(e)
    return out


def unglue(text: str, edits: list[SpanEdit]) -> list[SpanEdit]:
    """A deletion that would join two words or sentences ("disease .no") keeps one space."""
    out = []
    for e in edits:
        before, after = text[e.start - 1:e.start], text[e.end:e.end + 1]
        if not e.replacement and e.end > e.start and before and after and not before.isspace() \
                and not after.isspace() and after not in ".,;:!?" and text[e.start:e.end][:1].isspace() | text[e.start:e.end][-1:].isspace():
            e = SpanEdit(e.start, e.end, " ", e.error_type, e.editor)
        out.append(e)
    return out
