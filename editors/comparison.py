"""Comparison editor: a comparison the reference does not make goes; the finding it qualifies stays.

A report that says "stable", "again noted" or "compared to prior" when the reference describes a
first study invents a prior exam (GREEN's false comparison). The smallest fluent unit goes: the
whole sentence when it says nothing else ("no interval change"), the phrase with its preposition
("since the prior exam"), the adverb of "again noted", an adjective before its noun ("stable
mediastinal contours" -> "mediastinal contours"), a coordinated predicate ("... and stable").
Anything else is not proposed. A missed comparison is never inserted: a policy that sees one image
cannot know the prior, so that would teach it to invent one.
"""

from __future__ import annotations

from clinical.errors import ClinicalError
from editors.apply import normalize
from editors.base import EditContext, SpanEdit
from editors.clauses import removal, tok_range

_COPULA = {"is", "are", "appears", "appear", "remains", "remain", "was", "were", "has", "have", "been"}
_LEAD = {"compared", "comparison", "since", "from", "on", "than", "in", "when", "as", "to", "with", "the",
         "a", "an"}
_TAIL = {"prior", "previous", "study", "studies", "exam", "exams", "examination", "radiograph", "radiographs",
         "film", "films", "the", "interval", "xxxx", "dated", "of", "chest"}
_ADJECTIVES = {"stable", "unchanged", "new", "newly", "persistent", "continued", "increased", "increasing",
               "decreased", "decreasing", "improved", "improving", "worsened", "worsening", "redemonstrated",
               "interval", "persisting", "again"}
_END = {".", ";", ",", ":", "!", "?"}


class DeleteComparison:
    name = "comparison"
    error_types = ("false_comparison",)

    def propose(self, error: ClinicalError, ctx: EditContext) -> list[SpanEdit] | None:
        edits: list[SpanEdit] = []
        for span in _merge_adjacent(ctx, error.spans):
            ed = removal(ctx, ctx.doomed | {span}, span, error.error_type, self.name)
            if ed is not None and ed.end - ed.start > span[1] - span[0] + 1 and _only_this(ctx, ed, span):
                edits.append(ed)
                continue
            ed = self._words(ctx, span, error.error_type)
            if ed is None:
                return None
            edits.append(ed)
        return normalize(edits)

    def _words(self, ctx: EditContext, span: tuple[int, int], etype: str) -> SpanEdit | None:
        toks = ctx.tokens
        i, k = tok_range(ctx, *span)
        if i < 0:
            return None
        words = [t.lower for t in toks[i:k]]
        prev = toks[i - 1].lower if i > 0 else "."
        nxt = toks[k].lower if k < len(toks) else "."
        if words[0] == "again" and len(words) >= 2:
            return SpanEdit(toks[i].start, toks[i + 1].start, "", etype, self.name)  # "again noted" -> "noted"
        if prev in {"and", ","} and nxt in _END and i >= 2:
            return SpanEdit(toks[i - 2].end, toks[k - 1].end, "", etype, self.name)  # "... and stable"
        if prev in _COPULA and nxt == "and" and k + 1 < len(toks):
            return SpanEdit(toks[i].start, toks[k + 1].start, "", etype, self.name)  # "is stable and normal"
        if len(words) == 1 and words[0] in _ADJECTIVES and toks[k].text[:1].isalpha() if k < len(toks) else False:
            if nxt not in _LEAD | {"and", "or", "but", "with", "since", "compared"} and prev not in _COPULA:
                return SpanEdit(toks[i].start, toks[k].start, "", etype, self.name)  # "stable contours"
        # a comparison phrase: "(, ) compared to the prior exam", "since prior", "in the interval"
        j = i
        while j > 0 and toks[j - 1].lower in _LEAD:
            j -= 1
        m = k
        while m < len(toks) and toks[m].lower in _TAIL:
            m += 1
        if j == i and words[0] not in _LEAD and words[0] not in {"prior", "previous"}:
            return None
        if j > 0 and toks[j - 1].lower == ",":
            j -= 1
        start = toks[j].start
        while start > 0 and ctx.text[start - 1] == " ":
            start -= 1
        before = ctx.text[:start].rstrip()
        after = ctx.text[toks[m - 1].end:]
        if (not before or before[-1] in ".;:") and after.lstrip()[:1] in {",", ""}:
            return None
        if not before or before[-1] in ".;:":
            # the phrase opens its sentence: "Compared to prior, the lungs are clear."
            if after.lstrip()[:1] != ",":
                return None
            end = toks[m].end if m < len(toks) else toks[m - 1].end
            while end < len(ctx.text) and ctx.text[end] == " ":
                end += 1
            return SpanEdit(toks[j].start, end, "", etype, self.name)
        return SpanEdit(start, toks[m - 1].end, "", etype, self.name)


def _only_this(ctx: EditContext, ed: SpanEdit, span: tuple[int, int]) -> bool:
    """The removal holds no finding that is not doomed (it removes the comparison's own statement)."""
    return not any(ed.start <= f.start < ed.end and (f.start, f.end) not in ctx.doomed
                   for f in ctx.findings.findings)


def _merge_adjacent(ctx: EditContext, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """"unchanged since previous exam" is one comparison, not two."""
    out: list[list[int]] = []
    for s, e in sorted(set(spans)):
        if out:
            gap = ctx.text[out[-1][1]:s].split()
            if all(w.lower() in _LEAD | _TAIL for w in gap):
                out[-1][1] = max(out[-1][1], e)
                continue
        out.append([s, e])
    return [(s, e) for s, e in out]
