"""Negation editors: "there is a small effusion" -> "there is no effusion", and back.

A negation flip changes one or two words, the smallest edit that turns a false finding into the
reference's "no X", or a denied finding ("no effusion") into the reference's positive one.
"""

from __future__ import annotations

from editors.base import EditContext, SpanEdit
from editors.spans import ARTICLES, np_start, token_index
from editors.style import match_case
from pipeline.errors import ClinicalError

_NEG_CUES = (("no", "evidence", "of"), ("no", "signs", "of"), ("no", "definite"), ("no",), ("without",),
             ("negative", "for"), ("free", "of"))
_VERBS = {"show", "shows", "demonstrate", "demonstrates", "reveal", "reveals", "with"}
_ADVERBS = {"again", "also", "now", "still", "once"}
_COPULAS = {"is", "are", "appear", "appears", "remain", "remains", "seem", "seems", "look", "looks"}


class NegateFinding:
    """false_finding -> "no <finding>" at the start of its noun phrase (clause-initial or after "there is")."""

    name = "negation"
    error_types = ("false_finding",)

    def propose(self, error: ClinicalError, ctx: EditContext) -> list[SpanEdit] | None:
        edits = []
        done_sents: set = set()
        for f in sorted(error.findings, key=lambda f: f.start):
            sent = ctx.sentence_of(f.start)
            if sent in done_sents:
                continue  # an earlier "no" in this sentence already scopes over it
            done_sents.add(sent)
            j = np_start(ctx, f.start)
            i = token_index(ctx, f.start)
            if j < 0:
                return None
            prev = ctx.tokens[j - 1].lower if j > 0 else "."
            k = j - 1
            while k > 0 and ctx.tokens[k].lower in _ADVERBS:
                k -= 1
            there_is = k >= 1 and ctx.tokens[k].lower in {"is", "are"} and ctx.tokens[k - 1].lower == "there"
            clause_start = prev in {".", ";", ":", ","} or there_is or prev in _VERBS
            if not clause_start and prev in _COPULAS and not there_is:
                # predicate: "the lungs are (mildly) hyperinflated" -> "the lungs are not hyperinflated"
                t = ctx.tokens[j]
                edits.append(SpanEdit(t.start, ctx.tokens[i].start if i > j else t.start, "not ", error.error_type,
                                      self.name))
                continue
            if not clause_start or prev in {"no", "not", "without"}:
                return None
            like = ctx.tokens[j].text
            start = ctx.tokens[j].start
            # keep laterality/zone words, drop articles and severity: "a small left effusion" -> "no left effusion"
            keep = [t for t in ctx.tokens[j:i] if t.lower not in ARTICLES and t.lower in
                    {"left", "right", "bilateral", "upper", "lower", "middle", "basilar", "apical", "left-sided",
                     "right-sided", "bibasilar", "lobe", "lung", "retrocardiac", "perihilar"}]
            if len(keep) == i - j:  # nothing to drop: just put "no" in front
                t0 = ctx.tokens[j]
                if t0.text[:1].isupper() and not t0.text.isupper():
                    # "Left-sided pacemaker" -> "No left-sided pacemaker"
                    edits.append(SpanEdit(t0.start, t0.start + 1, "No " + t0.text[0].lower(), error.error_type,
                                          self.name))
                else:
                    edits.append(SpanEdit(start, start, match_case("no", like) + " ", error.error_type, self.name))
                continue
            if keep and like[:1].isupper() and not keep[0].text.isupper():
                keep[0] = type(keep[0])(keep[0].text[0].lower() + keep[0].text[1:], keep[0].lower, keep[0].start,
                                        keep[0].end)
            kept = " ".join(t.text for t in keep)
            repl = match_case("no", like) + " " + (kept + " " if kept else "")
            edits.append(SpanEdit(start, f.start, repl, error.error_type, self.name))
        return edits


class RemoveNegation:
    """missed_finding (denied): drop the cue of "no pleural effusion" when it negates only that finding."""

    name = "unnegation"
    error_types = ("missed_finding",)

    def propose(self, error: ClinicalError, ctx: EditContext) -> list[SpanEdit] | None:
        if error.kind != "denied":
            return None
        edits = []
        for f in error.findings:
            if f.category == "denial":
                return None
            cue = negation_cue_before(ctx, f.start)
            if cue is None:
                return None
            s, e = cue
            edits.append(SpanEdit(s, e, "", error.error_type, self.name))
        return edits


def negation_cue_before(ctx: EditContext, mention_start: int) -> tuple[int, int] | None:
    """Char span (with its trailing space) of a cue directly before the finding's noun phrase, if the
    cue opens the clause and the phrase is the only finding in its scope."""
    j = np_start(ctx, mention_start)
    if j <= 0:
        return None
    toks = ctx.tokens
    for cue in _NEG_CUES:
        n = len(cue)
        if j - n < 0:
            continue
        if tuple(t.lower for t in toks[j - n : j]) != cue:
            continue
        before = toks[j - n - 1].lower if j - n - 1 >= 0 else "."
        if before not in {".", ";", ":", "is", "are", ",", "and"} and j - n != 0:
            return None
        # the scope must hold no other finding
        i = token_index(ctx, mention_start)
        k = i + 1
        while k < len(toks) and toks[k].lower not in {".", ";", "but", "however"}:
            k += 1
        scope_end = toks[k - 1].end if k > 0 else mention_start
        others = [g for g in ctx.findings.findings if g.start != mention_start and toks[j].start <= g.start < scope_end]
        if others:
            return None
        start = toks[j - n].start
        return (start, toks[j].start)
    return None
