"""Apply span edits and record them in both texts' offsets (the pair's `edits` column)."""

from __future__ import annotations

from editors.base import SpanEdit
from schemas.pair import Edit


def apply_edits(text: str, edits: list[SpanEdit]) -> str:
    out, pos = [], 0
    for ed in sorted(edits, key=lambda e: (e.start, e.end)):
        if ed.start < pos:
            raise ValueError(f"overlapping edits at {ed.start}")
        out.append(text[pos : ed.start])
        out.append(ed.replacement)
        pos = ed.end
    out.append(text[pos:])
    return "".join(out)


def overlaps(a: list[SpanEdit], b: list[SpanEdit]) -> bool:
    for x in a:
        for y in b:
            if x.start < y.end and y.start < x.end:
                return True
            if x.start == x.end == y.start == y.end:
                return True
            if (x.start == x.end and y.start < x.start < y.end) or (y.start == y.end and x.start < y.start < x.end):
                return True
    return False


def edit_records(original: str, edits: list[SpanEdit], original_is_rejected: bool) -> list[Edit]:
    """Edit rows for a pair. When fixing, the original is `rejected` and the edited text `chosen`;
    when injecting an error, the edited text is `rejected` and the original `chosen`."""
    rows: list[Edit] = []
    shift = 0
    for ed in sorted(edits, key=lambda e: (e.start, e.end)):
        o_s, o_e = ed.start, ed.end
        n_s = ed.start + shift
        n_e = n_s + len(ed.replacement)
        shift += len(ed.replacement) - (ed.end - ed.start)
        if original_is_rejected:
            rows.append(Edit(o_s, o_e, n_s, n_e, ed.error_type, original[o_s:o_e], ed.replacement))
        else:
            rows.append(Edit(n_s, n_e, o_s, o_e, ed.error_type, ed.replacement, original[o_s:o_e]))
    return rows


def normalize(edits: list[SpanEdit]) -> list[SpanEdit] | None:
    """Sorted edits without duplicates or edits inside a deletion (two mentions in one deleted
    sentence); None when two edits genuinely overlap."""
    out: list[SpanEdit] = []
    for ed in sorted(set(edits), key=lambda x: (x.start, -x.end, not x.replacement, x.replacement, x.error_type,
                                                x.editor)):
        if out:
            last = out[-1]
            if (ed.start, ed.end) == (last.start, last.end) and last.start < last.end and not ed.replacement:
                continue  # the same words removed, and also replaced: the replacement stands
            inside = last.start <= ed.start and ed.end <= last.end and (last.start < last.end)
            if inside and (not last.replacement or (ed.start == ed.end == last.start)) and \
                    not (ed.start == ed.end and ed.replacement and ed.start in (last.start, last.end)):
                continue
            if ed.start < last.end:
                return None
        out.append(ed)
    return out


def combine(accepted: list[SpanEdit], proposal: list[SpanEdit]) -> list[SpanEdit] | None:
    """Accepted edits plus a proposal, or None if they overlap. Two insertions at the same point are
    joined into one (missed findings all go in before the closing impression line); a deletion that
    is already accepted (one normal statement denying several findings) is not repeated."""
    out = list(accepted)
    for p in proposal:
        if p.replacement.strip() and any(p.replacement.strip() in a.replacement for a in out):
            continue  # the same reference words already go in for another missed finding
        wider = [a for a in out if a.replacement.strip() and a.replacement.strip() in p.replacement]
        for a in wider:  # this sentence holds an inserted clause: the clause gives way to it
            out.remove(a)
            if a.start < a.end:
                out.append(SpanEdit(a.start, a.end, "", a.error_type, a.editor))
        merged = False
        for k, a in enumerate(out):
            if (a.start, a.end) == (p.start, p.end) and a.start < a.end and a.replacement.strip() \
                    and p.replacement.strip() and a.editor == p.editor == "insertion":
                # one removed sentence, two reference sentences for it: both go in its place
                body = a.replacement
                lead, trail = body[: len(body) - len(body.lstrip())], body[len(body.rstrip()):]
                joined = lead + body.strip() + " " + p.replacement.strip() + trail
                out[k] = SpanEdit(a.start, a.end, joined, a.error_type, a.editor)
                merged = True
                break
            if a.start == p.start and a.end == p.end and (a.start == a.end or not p.replacement
                                                          or not a.replacement):
                if a.start == a.end or (a.replacement and p.replacement):
                    rep = _join(a.replacement, p.replacement)
                else:
                    rep = a.replacement or p.replacement
                out[k] = SpanEdit(a.start, a.end, rep, a.error_type, a.editor)
                merged = True
                break
            if a.start <= p.start and p.end <= a.end and a.start < a.end and not a.replacement \
                    and not (p.start == p.end and p.start in (a.start, a.end)):
                merged = True  # already deleted
                break
        if not merged:
            clash = [a for a in out if overlaps([a], [p])]
            for a in clash:
                trimmed = _trim_neighbour(a, p)
                if trimmed is not None:
                    p = trimmed
                    continue
                p = _supersede(a, p)
                if p is None:
                    return None
                out.remove(a)
            out.append(p)
    return sorted(out, key=lambda e: (e.start, e.end))


def _supersede(a: SpanEdit, p: SpanEdit) -> SpanEdit | None:
    """One edit for two that overlap, when one removes the other's text anyway: a sentence replaced
    by an inserted finding swallows a list item removed inside it; two deletions that overlap
    become their union. None when both rewrite the same words differently."""
    if a.start <= p.start and p.end <= a.end and a.start < a.end and not p.replacement:
        return a
    if p.start <= a.start and a.end <= p.end and p.start < p.end and not a.replacement:
        return p
    if not a.replacement and not p.replacement:
        return SpanEdit(min(a.start, p.start), max(a.end, p.end), "", a.error_type, a.editor)
    return None


def _trim_neighbour(a: SpanEdit, p: SpanEdit) -> SpanEdit | None:
    """Two neighbouring sentences, each taking the space between them: the later one starts where the
    earlier one ends (kept apart, both applied). None when they overlap in words."""
    if a.start < p.start < a.end < p.end and a.end - p.start <= 2:
        rep = p.replacement.lstrip() if (a.replacement.endswith(" ") or not a.replacement) and p.replacement \
            and not a.replacement == "" else p.replacement
        return SpanEdit(a.end, p.end, rep, p.error_type, p.editor)
    if p.start < a.start < p.end < a.end and p.end - a.start <= 2:
        return SpanEdit(p.start, a.start, p.replacement, p.error_type, p.editor)
    return None


def _join(first: str, second: str) -> str:
    """Join two inserted sentences keeping the spacing each carried (" x ." or "x . ")."""
    if first.endswith(" ") and not second.startswith(" "):
        return first + second
    if first.startswith(" ") and second.startswith(" "):
        return first + second
    return first.rstrip() + " " + second.strip() + (" " if first.endswith(" ") else "")


def absorb(accepted: list[SpanEdit], proposal: list[SpanEdit]) -> list[SpanEdit] | None:
    """Accepted edits plus a proposal whose deletions swallow the accepted edits lying inside them
    (a sentence deleted for one error makes an earlier "no" inserted in it moot). The caller verifies
    that the errors those edits fixed stay fixed. None when an overlap remains."""
    deletions = [p for p in proposal if not p.replacement and p.end > p.start]
    if not deletions:
        return None
    kept = [a for a in accepted
            if not any(d.start <= a.start and a.end <= d.end and (a.start < a.end or a.start < d.end)
                       for d in deletions)]
    if len(kept) == len(accepted):
        return None
    return combine(kept, proposal)
