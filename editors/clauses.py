"""The clause reader: a response as sentences, each a run of segments and lists of statements.

Why edits are made here and not on words: a word-level edit ("no" in front of a phrase) can turn
a fluent sentence into nonsense, or a right statement into a wrong one. The unit of an edit is a
statement: a sentence when everything it says is wrong, else the segment ("with ...", ", ...")
or the list item ("no A, B or C" -> "no A or C") that says the wrong thing and nothing else.
A statement that is right is never inside a removed span; when that cannot be guaranteed the
reader says so (None) and the pair becomes a reject instead of a damaged sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clinical.findings import Finding
from editors.base import EditContext, SpanEdit

# Tokens that open a new segment of a sentence (the segment keeps its opener when removed).
SEGMENT_OPENERS = {",", ";", ":", "with", "but", "however", "although", "though", "whereas", "while",
                   "which", "and there", "there"}
NEG_CUES = (("no", "evidence", "of"), ("no", "signs", "of"), ("no", "sign", "of"), ("no", "definite"),
            ("no", "radiographic", "evidence", "of"), ("without", "evidence", "of"), ("negative", "for"),
            ("free", "of"), ("no",), ("without",), ("nor",))
# a comma opens a new segment only before words that start a clause
_AFTER_CLAUSE_COMMA = {"there", "which", "but", "however", "with", "without", "no", "the", "this", "these", "likely",
                       "possibly", "probably", "consistent", "compatible", "suggesting", "suggestive", "concerning",
                       "may", "could", "and", "although", "though", "while", "whereas", "otherwise", "as"}
LIST_SEPARATORS = {",", "or", "and", "nor", "/", "andor"}


@dataclass(frozen=True)
class Statement:
    """One thing a sentence says: a finding mention, a normal statement, or a comparison phrase."""

    start: int
    end: int
    kind: str  # finding / denial / comparison
    positive: bool
    concepts: frozenset[str] = frozenset()


def statements(ctx: EditContext) -> list[Statement]:
    """The response's statements, once per context (every unit decision asks for them)."""
    cached = getattr(ctx, "_statements", None)
    if cached is not None and cached[0] is ctx.findings:
        return cached[1]
    out = _statements(ctx)
    ctx._statements = (ctx.findings, out)
    return out


def _statements(ctx: EditContext) -> list[Statement]:
    concepts: dict[tuple[int, int], set[str]] = {}
    kinds: dict[tuple[int, int], tuple[str, bool]] = {}
    for f in ctx.findings.findings:
        span = _span(f)
        concepts.setdefault(span, set()).add(f.concept)
        kinds.setdefault(span, ("denial" if f.category == "denial" else "finding", f.positive))
    out = [Statement(s, e, k, pos, frozenset(concepts[(s, e)])) for (s, e), (k, pos) in kinds.items()]
    out += [Statement(s, e, "comparison", True) for s, e in ctx.findings.comparisons if (s, e) not in kinds]
    return sorted(out, key=lambda st: (st.start, st.end))


def expendable(ctx: EditContext, st: Statement) -> bool:
    """A denial the reference does not make: it may go with the wrong statement it shares a unit with
    (it is not a right statement we can vouch for); a denial the reference makes never goes."""
    if st.kind == "comparison":
        return True  # it only qualifies the statements around it
    if st.positive:
        return False
    ref = ctx.ref_findings
    # "Clear right lung. Extensive airspace disease in the left base.": the reference denies pneumonia on one
    # side and states what may be one on the other, so it does not vouch for a plain "no pneumonia"
    return not any(ref.status(c) == "absent" and not any(ref.status(x) in ("present", "uncertain")
                                                          for x in ctx.lexicon.compatible_with(c) - {c})
                   for c in st.concepts)


def _span(f: Finding) -> tuple[int, int]:
    return (f.start, f.end)


def in_sentence(ctx: EditContext, sent: tuple[int, int]) -> list[Statement]:
    return [st for st in statements(ctx) if sent[0] <= st.start < sent[1]]


def tok_range(ctx: EditContext, lo: int, hi: int) -> tuple[int, int]:
    """(first, last+1) token indices of the characters [lo, hi)."""
    idx = [i for i, t in enumerate(ctx.tokens) if t.end > lo and t.start < hi]
    return (idx[0], idx[-1] + 1) if idx else (-1, -1)


def segments(ctx: EditContext, sent: tuple[int, int]) -> list[tuple[int, int]]:
    """Token ranges of the sentence's segments; each but the first starts with its opener."""
    a, b = tok_range(ctx, *sent)
    if a < 0:
        return []
    toks = ctx.tokens
    cuts = [a]
    for k in range(a + 1, b):
        w = toks[k].lower
        nxt = toks[k + 1].lower if k + 1 < b else "."
        if w == "," and nxt not in _AFTER_CLAUSE_COMMA:
            continue  # "no consolidation, effusion or pneumothorax": a comma between list items
        if w in SEGMENT_OPENERS - {"there", "and there"} or (w == "and" and nxt == "there"):
            if k > cuts[-1]:
                cuts.append(k)
    return [(cuts[i], cuts[i + 1] if i + 1 < len(cuts) else b) for i in range(len(cuts))]


_HEADER = re.compile(r"^\s*(impression|findings|conclusion)\s*:\s*", re.IGNORECASE)
_HEADER_BEFORE = re.compile(r"(impression|findings|conclusion)\s*:\s*$", re.IGNORECASE)
_NUMBER_BEFORE = re.compile(r"(?:^|(?<=\s))\d{1,2}\s*[.)]\s*$")


def sentence_removal(ctx: EditContext, sent: tuple[int, int]) -> tuple[int, int]:
    """The sentence plus the whitespace after it (or before it, for the last sentence). A list
    number standing before it ("2.") goes with it; a section header it opens ("Impression:") stays
    while the section has more to say."""
    s, e = sent
    text = ctx.text
    m = _NUMBER_BEFORE.search(text[:s])
    if m:
        s = m.start()
    hb = _HEADER_BEFORE.search(text[:s])
    if hb and not _next_sentence_stays(ctx, sent):
        s = hb.start()  # "Impression: 1. <removed>" and nothing after it in the section: the header goes too
    h = _HEADER.match(text[s:e])
    if h and text[e:].strip() and not _HEADER.match(text[e:].lstrip()) and _next_sentence_stays(ctx, sent):
        s += h.end()
    j = e
    while j < len(text) and text[j].isspace():
        j += 1
    if j < len(text):
        return s, j
    i = s
    while i > 0 and text[i - 1].isspace():
        i -= 1
    return i, len(text)


def _next_sentence_stays(ctx: EditContext, sent: tuple[int, int]) -> bool:
    """Whether the sentence after `sent` says something that is not being removed."""
    later = [x for x in ctx.sentences if x[0] >= sent[1] and not re.fullmatch(r"\s*\d{1,2}\s*[.)]\s*",
                                                                            ctx.text[x[0]:x[1]])]
    if not later:
        return False
    sts = in_sentence(ctx, later[0])
    return not sts or any((st.start, st.end) not in ctx.doomed for st in sts)


def _end_of_tokens(ctx: EditContext, k: int) -> int:
    return ctx.tokens[k - 1].end


def removal(ctx: EditContext, doomed: set[tuple[int, int]], target: tuple[int, int],
            error_type: str, editor: str) -> SpanEdit | None:
    """The smallest whole unit holding `target` that says nothing but doomed statements.

    `doomed`: spans of every statement being removed for any error of this response, so two
    wrong statements in one sentence take the sentence together."""
    sent = ctx.sentence_of(target[0])
    if sent is None:
        return None
    sts = in_sentence(ctx, sent)
    kept = [st for st in sts if (st.start, st.end) not in doomed and not _inside_doomed(st, doomed)]
    whole = sentence_removal(ctx, sent)
    if not kept:
        if _says_normal_elsewhere(ctx, sent, target):
            # "lungs are hyperexpanded but clear" -> "lungs are clear": the normal word is no statement of
            # the extractor's (it stands apart from its anatomy), but it is right and stays
            part = _segment_removal(ctx, sent, target, [], error_type, editor)
            if part is not None:
                return part
        return SpanEdit(*whole, "", error_type, editor)
    if not [st for st in kept if not expendable(ctx, st)]:
        # only denials the reference does not make remain: keep them if the wrong segment goes cleanly
        part = _segment_removal(ctx, sent, target, kept, error_type, editor) or \
            list_item_removal(ctx, sent, target, kept, doomed, error_type, editor)
        return part if part is not None else SpanEdit(*whole, "", error_type, editor)
    return _segment_removal(ctx, sent, target, kept, error_type, editor) or \
        list_item_removal(ctx, sent, target, kept, doomed, error_type, editor)


_NORMAL_WORD = re.compile(r"\b(clear|normal|unremarkable|intact|expanded)\b", re.IGNORECASE)


def _says_normal_elsewhere(ctx: EditContext, sent: tuple[int, int], target: tuple[int, int]) -> bool:
    """Another segment of the sentence is a normal word ("... but clear")."""
    t0, _t1 = tok_range(ctx, *target)
    for a, b in segments(ctx, sent):
        if not a <= t0 < b and _NORMAL_WORD.search(ctx.text, ctx.tokens[a].start, ctx.tokens[b - 1].end):
            return True
    return False


def _segment_removal(ctx: EditContext, sent: tuple[int, int], target: tuple[int, int], kept: list[Statement],
                     error_type: str, editor: str) -> SpanEdit | None:
    """The segment of the sentence that holds `target` and no kept statement, with its opener."""
    segs = segments(ctx, sent)
    t0, _t1 = tok_range(ctx, *target)
    for n, (a, b) in enumerate(segs):
        if not a <= t0 < b:
            continue
        lo, hi = ctx.tokens[a].start, _end_of_tokens(ctx, b)
        if any(lo <= st.start < hi and not expendable(ctx, st) for st in kept):
            return None  # the segment also says something right: try its list items
        opener = ctx.tokens[a].lower
        if n == 0:
            nxt = segs[1][0] if len(segs) > 1 else None
            cop = _copula_before(ctx, a, t0)
            if nxt is not None and ctx.tokens[nxt].lower in {"but", "and"} and cop is not None:
                # "lungs are hyperexpanded but clear" -> "lungs are clear"
                return SpanEdit(ctx.tokens[cop + 1].start, ctx.tokens[nxt + 1].start, "", error_type, editor)
            if nxt is not None and ctx.tokens[nxt].lower == "but" and a == t0:
                # "hyperexpanded but clear lungs" -> "clear lungs"
                return SpanEdit(lo, ctx.tokens[nxt + 1].start, "", error_type, editor)
            if nxt is None or ctx.tokens[nxt].lower in {"which", "but", "however", "although", "though"}:
                return None  # what is left would start with a dangling conjunction
            skip = nxt + (1 if ctx.tokens[nxt].lower in {",", ";", "with"} else 0)
            if skip < len(ctx.tokens) and ctx.tokens[nxt].lower == "," and ctx.tokens[skip].lower == "with":
                skip += 1  # "the lungs appear clear, with no infiltrate" -> "no infiltrate"
            if skip < len(ctx.tokens) and ctx.tokens[skip].lower in {"without", "and", "or"}:
                return None  # "without ..." alone would lose its subject or flip its meaning
            start, end = lo, ctx.tokens[skip].start
            return SpanEdit(start, end, "", error_type, editor)
        if opener in {"which"} and n + 1 < len(segs):
            return None
        start = lo
        while start > 0 and ctx.text[start - 1] == " ":
            start -= 1
        if ctx.tokens[b - 1].lower in {".", "?", "!", ";"} and b - 1 > a:
            hi = ctx.tokens[b - 2].end  # the sentence keeps its full stop: "... cardiomegaly ." not "cardiomegaly no ..."
            if start > 0 and ctx.text[start - 1] in ",;":
                start -= 1  # and loses the comma that opened the segment: "... effusion." not "... effusion,."
                while start > 0 and ctx.text[start - 1] == " ":
                    start -= 1
        return SpanEdit(start, hi, "", error_type, editor)
    return None


def _copula_before(ctx: EditContext, a: int, t0: int) -> int | None:
    for k in range(t0 - 1, a - 1, -1):
        if ctx.tokens[k].lower in {"is", "are", "appear", "appears", "remain", "remains"}:
            return k
    return None


def _inside_doomed(st: Statement, doomed: set[tuple[int, int]]) -> bool:
    return any(s <= st.start and st.end <= e for s, e in doomed)


def neg_cue_before(ctx: EditContext, k: int, lo: int) -> tuple[int, int] | None:
    """Token range of the nearest negation cue before token k, not before token lo."""
    toks = ctx.tokens
    for j in range(k - 1, lo - 1, -1):
        for cue in NEG_CUES:
            n = len(cue)
            if j + n <= k and all(toks[j + i].lower == cue[i] for i in range(n)):
                return (j, j + n)
    return None


# words that make the text between two findings a clause, not a list ("pneumothorax has increased since
# ___, apical pleural tube ...")
_NOT_IN_A_LIST = {"is", "are", "was", "were", "has", "have", "had", "with", "of", "in", "at", "to", "since", "than",
                  "seen", "noted", "remains", "remain", "appears", "appear", "shows", "show", "increased",
                  "decreased", "unchanged", "stable", "persists", "persist"}


def list_item_removal(ctx: EditContext, sent: tuple[int, int], target: tuple[int, int], kept: list[Statement],
                      doomed: set[tuple[int, int]], error_type: str, editor: str) -> SpanEdit | None:
    """ "no A, B or C" without B: "no A or C"; without C: "no A or B"; without A: "no B or C"."""
    toks = ctx.tokens
    t0, t1 = tok_range(ctx, *target)
    a, b = tok_range(ctx, *sent)
    target_st = next((st for st in in_sentence(ctx, sent) if (st.start, st.end) == target), None)
    if target_st is None:
        return None
    # the list: statements of the same polarity and kind in the same segment
    seg = next(((x, y) for x, y in segments(ctx, sent) if x <= t0 < y), (a, b))
    items = [st for st in in_sentence(ctx, sent) if st.kind == target_st.kind and st.positive == target_st.positive
             and seg[0] <= tok_range(ctx, st.start, st.end)[0] < seg[1]]
    if len(items) < 2 or target_st not in items:
        return None
    ranges = [tok_range(ctx, st.start, st.end) for st in items]
    # words between items must be list separators or noun-phrase modifiers, not verbs or clauses
    for (_, e1), (s2, _) in zip(ranges, ranges[1:], strict=False):
        gap = [toks[k].lower for k in range(e1, s2)]
        if any(g in _NOT_IN_A_LIST for g in gap):
            return None
    first = ranges[0][0]
    if not target_st.positive:
        cue = neg_cue_before(ctx, first, seg[0])
        if cue is None:
            return None
        first = cue[1]
    else:
        while first > seg[0] and toks[first - 1].lower not in LIST_SEPARATORS | {"there", "is", "are", ",", "of"} \
                and toks[first - 1].text[:1].isalpha():
            first -= 1
    # chunk i: from the end of item i-1 (or the list start) to the end of item i
    starts = [first] + [r[1] for r in ranges[:-1]]
    i = items.index(target_st)
    if i == len(items) - 1:
        s_tok, e_tok = starts[i], ranges[i][1]
        had_conj = any(toks[k].lower in {"or", "and", "nor"} for k in range(s_tok, ranges[i][0]))
        start = toks[s_tok - 1].end if s_tok > 0 else toks[s_tok].start
        edit_start, edit_end, rep = start, toks[e_tok - 1].end, ""
        if had_conj and len(items) >= 3:
            # "no A, B or C" -> "no A or B": the conjunction moves to the new last item
            prev_s = starts[i - 1]
            conj = next(toks[k].text for k in range(s_tok, ranges[i][0]) if toks[k].lower in {"or", "and", "nor"})
            if toks[prev_s].lower == ",":
                return SpanEdit(toks[prev_s].start if toks[prev_s].start == toks[prev_s - 1].end
                                else toks[prev_s - 1].end, edit_end,
                                " " + conj + ctx.text[toks[prev_s].end:toks[ranges[i - 1][1] - 1].end],
                                error_type, editor)
            if not any(toks[k].lower in LIST_SEPARATORS for k in range(prev_s, ranges[i - 1][0])):
                return SpanEdit(toks[prev_s].start, edit_end,
                                conj + " " + ctx.text[toks[prev_s].start:toks[ranges[i - 1][1] - 1].end],
                                error_type, editor)
        return SpanEdit(edit_start, edit_end, rep, error_type, editor)
    if i > 0:
        # a middle item goes with the separator before it: "no A, B or C" -> "no A or C"
        prev_end = toks[ranges[i - 1][1] - 1].end
        return SpanEdit(prev_end, toks[ranges[i][1] - 1].end, "", error_type, editor)
    # the first item goes with the separator after it: "no A, B or C" -> "no B or C"
    nxt = ranges[0][1]
    while nxt < ranges[1][0] and toks[nxt].lower in LIST_SEPARATORS:
        nxt += 1
    return SpanEdit(toks[first].start, toks[nxt].start, "", error_type, editor)
