"""Deletion editor: remove a false finding (its sentence, or its item in a list).

Deleting is the fallback when negating would read wrong ("no sternotomy wires"), and the first
step of fixing a finding that the response denies inside a list or a normal statement.
"""

from __future__ import annotations

from editors.apply import normalize
from editors.base import EditContext, SpanEdit
from editors.spans import CONNECTORS, np_start, removal_span, sentence_removal_span, token_index
from pipeline.errors import ClinicalError


def _other_content(ctx: EditContext, sent: tuple[int, int], spans: list[tuple[int, int]],
                   positive_only: bool = False) -> bool:
    mine = set(spans) | ctx.doomed
    for f in ctx.findings.findings:
        if positive_only and not f.positive:
            continue
        if sent[0] <= f.start < sent[1] and (f.start, f.end) not in mine:
            if f.category != "denial" or not any(s <= f.start < e or f.start <= s < f.end for s, e in mine):
                return True
    return False


def delete_mention(ctx: EditContext, start: int, end: int, error_type: str, name: str,
                   spans: list[tuple[int, int]] | None = None,
                   denial: tuple[int, int] | None = None) -> SpanEdit | None:
    """The sentence when it says nothing else, else the noun phrase with one neighbouring connector."""
    sent = ctx.sentence_of(start)
    if sent is None:
        return None
    if not _other_content(ctx, sent, spans or [(start, end)]):
        if len(ctx.sentences) <= 1:
            return None  # never delete the whole response
        s, e = sentence_removal_span(ctx, sent)
        return SpanEdit(s, e, "", error_type, name)
    toks = ctx.tokens
    if denial:
        ed = _drop_normal_word(ctx, denial, error_type, name)
        if ed is not None:
            return ed
    j = np_start(ctx, start)
    i = token_index(ctx, end - 1)
    if j < 0 or i < 0:
        return None
    if i + 1 < len(toks) and toks[i + 1].lower in CONNECTORS and toks[i + 1].start < sent[1]:
        k = i + 1
        while k + 1 < len(toks) and toks[k + 1].lower in CONNECTORS:
            k += 1
        s, e = toks[j].start, toks[k + 1].start if k + 1 < len(toks) else toks[k].end
        return SpanEdit(s, e, "", error_type, name)
    if i + 1 < len(toks) and toks[i + 1].lower in {"with", "but"} and i + 2 < len(toks):
        # "cardiomegaly with bibasilar atelectasis" -> "bibasilar atelectasis"
        s, e = toks[j].start, toks[i + 2].start
        return SpanEdit(s, e, "", error_type, name)
    if j > 0 and toks[j - 1].lower in CONNECTORS:
        k = j - 1
        while k > 0 and toks[k - 1].lower in CONNECTORS:
            k -= 1
        s, e = removal_span(ctx, toks[k].start, toks[i].end)
        return SpanEdit(s, e, "", error_type, name)
    if not _other_content(ctx, sent, spans or [(start, end)], positive_only=True) and len(ctx.sentences) > 1:
        # the rest of the sentence only denies other things: dropping it states nothing false
        s, e = sentence_removal_span(ctx, sent)
        return SpanEdit(s, e, "", error_type, name)
    return None


def _drop_normal_word(ctx: EditContext, cue: tuple[int, int], error_type: str, name: str) -> SpanEdit | None:
    """"the lungs are clear without infiltrate" -> "the lungs are without infiltrate";
    "lungs are expanded and clear" -> "lungs are expanded"."""
    toks = ctx.tokens
    i, k = token_index(ctx, cue[0]), token_index(ctx, cue[1] - 1)
    if i < 0 or k < 0:
        return None
    nxt = toks[k + 1].lower if k + 1 < len(toks) else "."
    prev = toks[i - 1].lower if i > 0 else "."
    if nxt in {"without", "with", "of"} and prev in {"is", "are", "appear", "appears", "remain", "remains"}:
        s, e = removal_span(ctx, toks[i].start, toks[k].end)
        return SpanEdit(s, e, "", error_type, name)
    if prev == "and" and i >= 2:
        s, e = toks[i - 1].start - 1, toks[k].end
        return SpanEdit(s, e, "", error_type, name)
    return None


class DeleteFinding:
    name = "deletion"
    error_types = ("false_finding",)

    def propose(self, error: ClinicalError, ctx: EditContext) -> list[SpanEdit] | None:
        edits: list[SpanEdit] = []
        for f in error.findings:
            ed = delete_mention(ctx, f.start, f.end, error.error_type, self.name, error.spans)
            if ed is None:
                return None
            edits.append(ed)
        return merge(edits)


def merge(edits: list[SpanEdit]) -> list[SpanEdit]:
    return normalize(edits) or []
