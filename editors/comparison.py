"""Comparison editors: delete a comparison the reference does not make; add one it does make.

A generated report that says "unchanged" or "compared to prior" when the reference describes a
first study is GREEN's false comparison; the words go, the finding they qualify stays.
"""

from __future__ import annotations

from editors.apply import normalize
from editors.base import EditContext, SpanEdit
from editors.deletion import _other_content
from editors.insertion import insert_sentence, reference_clause
from editors.spans import removal_span, sentence_removal_span, token_index
from pipeline.errors import ClinicalError

_COPULA = {"is", "are", "appears", "appear", "remains", "remain", "was", "were", "has", "have", "been"}
_PHRASE_LEAD = {"compared", "comparison", "since", "from", "on", "than", "in"}
_DROP_AFTER = {"prior", "previous", "study", "exam", "examination", "radiograph", "radiographs", "film", "the"}


class DeleteComparison:
    name = "comparison"
    error_types = ("false_comparison",)

    def propose(self, error: ClinicalError, ctx: EditContext) -> list[SpanEdit] | None:
        edits: list[SpanEdit] = []
        toks = ctx.tokens
        for s, e in _merge_adjacent(ctx, error.spans):
            i, k = token_index(ctx, s), token_index(ctx, e - 1)
            if i < 0 or k < 0:
                return None
            prev = toks[i - 1].lower if i > 0 else "."
            nxt = toks[k + 1].lower if k + 1 < len(toks) else "."
            sent = ctx.sentence_of(s)
            if prev in _COPULA and nxt == "and" and k + 2 < len(toks):
                # "is stable and within normal limits" -> "is within normal limits"
                edits.append(SpanEdit(toks[i].start, toks[k + 2].start, "", error.error_type, self.name))
                continue
            if prev in _COPULA and nxt in {".", ";", ","}:
                # predicate "X is unchanged": the sentence goes if it states nothing else
                if sent and not _other_content(ctx, sent, []) and len(ctx.sentences) > 1:
                    a, b = sentence_removal_span(ctx, sent)
                    edits.append(SpanEdit(a, b, "", error.error_type, self.name))
                    continue
                edits.append(SpanEdit(s, e, "present" if prev in {"is", "are"} else "seen",
                                      error.error_type, self.name))
                continue
            j = i
            if toks[i].lower in _PHRASE_LEAD or toks[i].lower in {"prior", "previous"}:
                while j > 0 and toks[j - 1].lower in {",", "when", "as", "and", "to", "with", "the"} | _PHRASE_LEAD:
                    j -= 1
                while k + 1 < len(toks) and toks[k + 1].lower in _DROP_AFTER:
                    k += 1
            if k + 1 < len(toks) and toks[k + 1].lower == "," and (j == 0 or toks[j - 1].lower in {".", ":"}
                                                                  or toks[j - 1].end < toks[j].start - 1):
                k += 1  # "As compared to the previous radiograph, there is ..." -> "there is ..."
            a, b = removal_span(ctx, toks[j].start, toks[k].end)
            edits.append(SpanEdit(a, b, "", error.error_type, self.name))
        return normalize(edits)


def _merge_adjacent(ctx: EditContext, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """"unchanged since previous exam" is one comparison, not two."""
    out: list[list[int]] = []
    for s, e in sorted(spans):
        if out:
            gap = ctx.text[out[-1][1]:s].split()
            if all(w.lower() in _PHRASE_LEAD | _DROP_AFTER | {"to", "with"} for w in gap):
                out[-1][1] = max(out[-1][1], e)
                continue
        out.append([s, e])
    return [(s, e) for s, e in out]


class InsertComparison:
    name = "comparison_insert"
    error_types = ("missed_comparison",)

    def propose(self, error: ClinicalError, ctx: EditContext) -> list[SpanEdit] | None:
        if not ctx.ref_findings.comparisons:
            return None
        s, e = ctx.ref_findings.comparisons[0]
        fragment = reference_clause(ctx.reference, s, e)
        if not fragment:
            return None
        return [insert_sentence(ctx, fragment, error.error_type, self.name)]
