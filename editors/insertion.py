"""Insertion editor: a missed finding goes in as one short sentence, in the response's own style.

The words come from the reference's clause that states the finding, so nothing is invented; the
sentence goes before a closing "no acute ..." impression line when there is one, else at the end.
When the response denies the finding ("lungs are clear", "no effusion or pneumothorax"), the
denial is removed in the same proposal.
"""

from __future__ import annotations

import re

from editors.apply import normalize
from editors.base import EditContext, SpanEdit
from editors.deletion import delete_mention
from editors.style import sentence
from pipeline.errors import ClinicalError
from pipeline.extract.rules import split_clauses
from pipeline.extract.tokens import tokenize

_SUMMARY = re.compile(r"^\s*(no (acute|active|evidence of acute)|(impression|normal chest)\b)", re.IGNORECASE)
_LEAD = {"and", "but", "with", "however", "although", "though", "which", "while", "whereas", ",", "also"}
MAX_WORDS = 10


_NP_AFTER = {"in", "at", "of", "within", "over", "involving", "along", "overlying", "the", "both", "left", "right",
             "bilateral", "upper", "lower", "middle", "lobe", "lobes", "lung", "lungs", "base", "bases", "apex",
             "apices", "zone", "zones", "hilum", "hila", "hilar", "perihilar", "retrocardiac", "region",
             "costophrenic", "angle", "angles", "hemithorax", "mid", "lingula", "field", "fields", "xxxx"}
_NP_BEFORE = {"a", "an", "the", "few", "several", "multiple", "scattered", "focal", "patchy", "streaky", "new",
              "small", "mild", "mildly", "minimal", "trace", "tiny", "moderate", "large", "severe", "marked",
              "extensive", "massive", "slight", "subtle", "left", "right", "bilateral", "left-sided",
              "right-sided", "bibasilar", "bibasal", "biapical", "upper", "lower", "middle", "basilar",
              "apical", "lingular", "retrocardiac", "perihilar", "hilar", "linear", "calcified", "chronic",
              "old", "diffuse", "dense", "nodular", "interstitial", "airspace", "prominent", "borderline",
              "subsegmental", "possible", "probable", "likely", "xxxx", "lobe", "lung", "tracheostomy",
              "endotracheal", "aortic", "pulmonary", "pleural", "degenerative", "thoracic", "lumbar", "spinal"}


_SIDES = {"left", "right", "bilateral", "both", "upper", "lower", "middle", "base", "bases", "apex", "apices",
          "hilum", "hilar", "retrocardiac", "perihilar", "lingula", "costophrenic", "midlung", "basilar", "apical"}
_STOP = {"is", "are", "was", "were", "be", "been", "seen", "noted", "present", "identified", "demonstrated",
         "visualized", "which", "that", "with", "without", "and", "or", "but", "compatible", "consistent",
         "suggest", "suggests", "suggesting", "suggestive", "may", "might", "could", "likely", "appears", "appear",
         "represent", "represents", "related", "due", "secondary", "concerning", "there", "no", "not", "has",
         "have", "also", "again", "now", "since", "than", "this", "these", "those", "for", "to", "as", "by",
         "unchanged", "stable", "new", "the", "a", "an", "otherwise", "including", "remains", "remain"}


def _word(t) -> bool:
    return t.text[:1].isalnum()


def reference_phrase(reference: str, start: int, end: int) -> str | None:
    """The finding as the reference words it, cut to its noun phrase: modifiers before, a location
    phrase after ("extensive airspace disease in the left base"). Short, and invents nothing."""
    toks = tokenize(reference)
    idx = [k for k, t in enumerate(toks) if t.end > start and t.start < end]
    if not idx:
        return None
    i, k = idx[0], idx[-1]
    n = 0
    unknown = 0
    while i > 0 and _word(toks[i - 1]) and (toks[i - 1].lower in _NP_BEFORE or toks[i - 1].lower not in _STOP) \
            and n < 4 and not toks[i - 1].text.isdigit():
        w = toks[i - 1].lower
        if w not in _NP_BEFORE and (w.endswith("ed") or w.endswith("ly") or w.endswith("ing")):
            break  # "incompletely evaluated", "chronic appearing": not part of the finding's name
        unknown += w not in _NP_BEFORE
        if unknown > 1:
            break
        i -= 1
        n += 1
    while i <= k and toks[i].lower in {"a", "an", "the"}:
        i += 1
    # a predicate adjective ("lungs are hyperexpanded") keeps its subject
    c = i - 1
    while c >= 0 and toks[c].lower in {"mildly", "moderately", "markedly", "slightly", "severely", "minimally"}:
        c -= 1
    if c >= 1 and toks[c].lower in {"is", "are", "appear", "appears", "remain", "remains"}:
        b = c
        while b > 0 and _word(toks[b - 1]) and toks[b - 1].lower not in _STOP - {"the"} and c - b < 4:
            b -= 1
        if b < c:
            i = b + (toks[b].lower in {"the", "a", "an"})
    # head nouns right after the mention ("tracheostomy tube", "degenerative changes")
    j, n = k, 0
    while j + 1 < len(toks) and _word(toks[j + 1]) and toks[j + 1].lower not in _STOP \
            and (toks[j + 1].lower not in _NP_AFTER or toks[j + 1].lower == "xxxx") and n < 2 \
            and not toks[j + 1].text.isdigit():
        j += 1
        n += 1
    # then one location phrase ("in the left base", "of the spine")
    if j + 1 < len(toks) and toks[j + 1].lower in {"in", "at", "of", "within", "over", "involving", "along",
                                                   "overlying", "throughout"}:
        m, n = j + 1, 0
        while m + 1 < len(toks) and _word(toks[m + 1]) and (toks[m + 1].lower in _NP_AFTER or
                                                             toks[m + 1].lower not in _STOP | {"in", "at", "of"}) \
                and n < 5:
            m += 1
            n += 1
        while m > j and toks[m].lower in {"in", "at", "of", "within", "over", "the", "both", "along", "involving",
                                          "overlying", "throughout"}:
            m -= 1
        if any(t.lower in _SIDES for t in toks[j + 1 : m + 1]):
            j = m  # keep a location phrase only when it says where: side or zone
    return reference[toks[i].start : toks[j].end]


def reference_clause(reference: str, start: int, end: int) -> str | None:
    """The reference clause holding [start, end): the finding as the radiologist wrote it."""
    toks = tokenize(reference)
    for _sent, lo, hi in split_clauses(toks, reference):
        if lo < hi and toks[lo].start <= start < toks[hi - 1].end:
            while lo < hi and toks[lo].lower in _LEAD:
                lo += 1
            while hi > lo and toks[hi - 1].lower in {".", ";", ",", ":"}:
                hi -= 1
            if hi <= lo:
                return None
            words = [t for t in toks[lo:hi] if t.text.isalnum() or t.text[:1].isalnum()]
            if len(words) > MAX_WORDS:
                # too long to be a minimal insertion: keep the finding with its direct modifiers
                i = next(k for k in range(lo, hi) if toks[k].end > start)
                j = i
                while j > lo and toks[j - 1].text[:1].isalpha() and j > i - 4:
                    j -= 1
                k = i
                while k + 1 < hi and toks[k + 1].start < end:
                    k += 1
                return reference[toks[j].start : toks[k].end]
            return reference[toks[lo].start : toks[hi - 1].end]
    return None


def insertion_point(ctx: EditContext) -> tuple[int, bool]:
    """(char offset, before_summary). Before a final "no acute ..." sentence, else after the last one."""
    if len(ctx.sentences) >= 2:
        s, _e = ctx.sentences[-1]
        if _SUMMARY.match(ctx.text[s:]):
            return s, True
    return len(ctx.text.rstrip()), False


def insert_sentence(ctx: EditContext, fragment: str, error_type: str, name: str) -> SpanEdit:
    sent = sentence(fragment, ctx.style)
    pos, before = insertion_point(ctx)
    if before:
        return SpanEdit(pos, pos, sent + " ", error_type, name)
    if pos == 0:
        return SpanEdit(0, 0, sent, error_type, name)
    if ctx.text[:pos].rstrip()[-1:] not in ".!?":
        # the response stops mid-sentence ("... no pneumothor"): close it, or its negation would scope us
        sent = (" . " if ctx.style.spaced_punct else ". ") + sent
        return SpanEdit(pos, pos, sent, error_type, name)
    return SpanEdit(pos, pos, " " + sent, error_type, name)


class InsertFinding:
    name = "insertion"
    error_types = ("missed_finding",)

    def propose(self, error: ClinicalError, ctx: EditContext) -> list[SpanEdit] | None:
        refs = [r for r in error.ref_findings if r.positive]
        if not refs:
            return None
        ref = max(refs, key=lambda r: (r.certainty == "present", bool(r.laterality), r.severity is not None))
        fragment = reference_phrase(ctx.reference, *(ref.phrase_span or (ref.start, ref.end)))
        if ref.certainty == "uncertain" and fragment:
            fragment = "possible " + fragment
        if not fragment:
            return None
        edits: list[SpanEdit] = []
        for f in error.findings:  # denied mentions: remove the denial first
            ed = delete_mention(ctx, f.start, f.end, error.error_type, self.name, error.spans,
                                denial=f.cue_span if f.category == "denial" else None)
            if ed is None:
                return None
            edits.append(ed)
        ins = insert_sentence(ctx, fragment, error.error_type, self.name)
        # a deleted sentence right where we insert: replace it instead
        for k, ed in enumerate(edits):
            if ed.start <= ins.start <= ed.end and not ed.replacement:
                edits[k] = SpanEdit(ed.start, ed.end, ins.replacement if ins.replacement.endswith(" ")
                                    else ins.replacement.lstrip() + " ", error.error_type, self.name)
                break
        else:
            edits.append(ins)
        return normalize(edits)
