"""Deletion editor: a finding the reference does not assert goes with its statement.

Never negated: "no" in front of a phrase the reference never mentions is an unsupported denial,
and in front of a clause it is broken English. The clause reader picks the unit (sentence,
segment, list item) that holds only wrong statements; if there is none, no proposal.
"""

from __future__ import annotations

from clinical.errors import ClinicalError
from editors.apply import normalize
from editors.base import EditContext, SpanEdit
from editors.clauses import removal, tok_range

_COPULA = {"is", "are", "appear", "appears", "remain", "remains"}


def remove_statement(ctx: EditContext, span: tuple[int, int], error_type: str, name: str,
                     cue: tuple[int, int] | None = None) -> SpanEdit | None:
    """Remove one statement; a normal statement inside a longer clause may lose just its normal
    word ("the lungs are clear without effusion" -> "the lungs are without effusion")."""
    ed = removal(ctx, ctx.doomed, span, error_type, name)
    if ed is None and cue is not None:
        ed = drop_normal_word(ctx, cue, error_type, name)
    return ed


def drop_normal_word(ctx: EditContext, cue: tuple[int, int], error_type: str, name: str) -> SpanEdit | None:
    toks = ctx.tokens
    i, k = tok_range(ctx, *cue)
    if i < 0:
        return None
    nxt = toks[k].lower if k < len(toks) else "."
    prev = toks[i - 1].lower if i > 0 else "."
    if nxt in {"without", "with"} and prev in _COPULA:
        return SpanEdit(toks[i].start, toks[k].start, "", error_type, name)
    if prev == "and" and i >= 2 and toks[i - 2].text[:1].isalpha():
        return SpanEdit(toks[i - 2].end, toks[k - 1].end, "", error_type, name)
    if nxt == "and" and prev in _COPULA and k + 1 < len(toks) and toks[k + 1].text[:1].isalpha():
        return SpanEdit(toks[i].start, toks[k + 1].start, "", error_type, name)
    return None


_ORGANS = {"lungs", "lung", "heart", "hemidiaphragm", "hemidiaphragms", "diaphragm", "diaphragms", "aorta"}


def drop_modifier(ctx: EditContext, span: tuple[int, int], error_type: str, name: str) -> SpanEdit | None:
    """A one-word finding that only qualifies an organ the sentence goes on to describe rightly:
    "hyperexpanded lungs without focal airspace disease" -> "lungs without focal airspace disease",
    "lungs are hyperexpanded without effusion" -> "lungs are without effusion"."""
    toks = ctx.tokens
    i, k = tok_range(ctx, *span)
    if i < 0 or k != i + 1 or k >= len(toks):
        return None
    prev = toks[i - 1].lower if i > 0 else "."
    nxt = toks[k].lower
    if nxt in _ORGANS and prev in {".", ";", ":", "the", "both"} | _COPULA:
        return SpanEdit(toks[i].start, toks[k].start, "", error_type, name)
    if prev in _COPULA and nxt in {"without", "with"}:
        return SpanEdit(toks[i].start, toks[k].start, "", error_type, name)
    return None


class DeleteFinding:
    name = "deletion"
    error_types = ("false_finding",)

    def propose(self, error: ClinicalError, ctx: EditContext) -> list[SpanEdit] | None:
        edits: list[SpanEdit] = []
        for f in error.findings:
            ed = remove_statement(ctx, (f.start, f.end), error.error_type, self.name) or \
                drop_modifier(ctx, (f.start, f.end), error.error_type, self.name)
            if ed is None:
                return None
            if f.phrase_span and not (ed.start <= f.phrase_span[0] and f.phrase_span[1] <= ed.end):
                return None  # "elevated left hemidiaphragm" must not lose only "elevated"
            edits.append(ed)
        return normalize(edits) or None
