"""Error injection: when a response is already right, make its rejected twin with one clinical error.

FiRe-MPO does the same for correct samples. The errors are as varied as the ones models make, so
the two sides cannot be told apart by one recurring word: a laterality swap, a severity change,
a present finding denied, a normal statement turned into a finding models hallucinate,
a hallucinated finding added, an invented comparison. Each is a whole, fluent clause by
construction; the text stage verifies it like a fix (exactly one new error, of that type, and the
fluency checker passes). The seeded generator picks the order, so the mix follows the seed.
"""

from __future__ import annotations

import random

from editors.base import EditContext, SpanEdit
from editors.clauses import in_sentence, tok_range
from editors.insertion import insert_sentence
from editors.style import match_case, sentence

_FLIP = {"left": "right", "right": "left"}
_SEV = {"small": "large", "mild": "severe", "minimal": "extensive", "trace": "large", "tiny": "large",
        "mildly": "markedly", "moderate": "small", "large": "small", "severe": "mild", "marked": "mild",
        "extensive": "minimal", "slight": "marked", "moderately": "mildly", "markedly": "mildly"}
# what a normal statement about an anatomy becomes (the anatomy key is the denied concept)
_ABNORMAL = {
    "cardiomegaly": ["the heart is mildly enlarged", "there is moderate cardiomegaly",
                     "the cardiac silhouette is enlarged"],
    "consolidation": ["there is patchy airspace opacity in the {side} lower lobe",
                      "there is {side} lower lobe consolidation", "there is {side} basilar atelectasis"],
    "pleural_effusion": ["there is a small {side} pleural effusion", "there is blunting of the {side} "
                         "costophrenic angle consistent with a small effusion"],
    "pneumothorax": ["there is a small {side} apical pneumothorax"],
    "edema": ["there is mild interstitial pulmonary edema", "there is pulmonary vascular congestion"],
    "fracture": ["there is an acute fracture of the {side} sixth rib"],
}
# hallucinations added as a new sentence, for concepts the response and reference do not mention
_HALLUCINATE = {
    "lung_lesion": "there is a 1 cm nodule in the {side} upper lobe",
    "granuloma": "there is a calcified granuloma in the {side} lung base",
    "atelectasis": "there is mild {side} basilar atelectasis",
    "pleural_effusion": "there is a small {side} pleural effusion",
    "cardiomegaly": "the heart is mildly enlarged",
    "pneumothorax": "there is a small {side} apical pneumothorax",
    "degenerative_changes": "there are mild degenerative changes of the thoracic spine",
    "consolidation": "there is {side} lower lobe consolidation",
}


def injection_candidates(ctx: EditContext, rng: random.Random) -> list[tuple[str, list[SpanEdit]]]:
    """(error type, edits) candidates, in the generator's order; the caller keeps the first that verifies."""
    kinds: dict[str, list[tuple[str, list[SpanEdit]]]] = {}
    side = rng.choice(["left", "right"])
    for f in ctx.findings.findings:
        if f.positive and f.category == "finding":
            for s, e, _lat in f.laterality_spans:
                old = ctx.text[s:e]
                base = old.lower().split("-")[0].split(" ")[0]
                if base in _FLIP:
                    new = match_case(_FLIP[base], old) + old[len(base):]
                    kinds.setdefault("laterality", []).append(("wrong_location", [_ed(s, e, new, "wrong_location")]))
            if f.severity_span:
                s, e = f.severity_span
                old = ctx.text[s:e]
                if old.lower() in _SEV:
                    kinds.setdefault("severity", []).append(
                        ("wrong_severity", [_ed(s, e, match_case(_SEV[old.lower()], old), "wrong_severity")]))
            denied = _deny_sentence(ctx, f)
            if denied:
                kinds.setdefault("denied", []).append(("missed_finding", [denied]))
            new = _new_before(ctx, f)
            if new:
                kinds.setdefault("comparison", []).append(("false_comparison", [new]))
        elif f.category == "denial" and f.concept in _ABNORMAL and f.cue_span:
            sent = ctx.sentence_of(f.start)
            if sent and len(in_sentence(ctx, sent)) == 1:
                text = rng.choice(_ABNORMAL[f.concept]).format(side=side)
                kinds.setdefault("normal_to_finding", []).append(
                    ("false_finding", [_replace_sentence(ctx, sent, text, "false_finding")]))
            stable = _stable_for_normal(ctx, f.cue_span)
            if stable:
                kinds.setdefault("comparison", []).append(("false_comparison", [stable]))
    mentioned = {f.concept for f in ctx.findings.findings} | {f.concept for f in ctx.ref_findings.findings}
    pool = [c for c in _HALLUCINATE if c not in mentioned]
    rng.shuffle(pool)
    for c in pool[:2]:
        kinds.setdefault("hallucination", []).append(
            ("false_finding", [insert_sentence(ctx, _HALLUCINATE[c].format(side=side), "false_finding", "inject")]))
    for lst in kinds.values():
        rng.shuffle(lst)
    order = list(kinds)
    rng.shuffle(order)
    # one of each kind first, in the seeded order, then the rest
    ranked = [(k, kinds[k][0]) for k in order] + [(k, c) for k in order for c in kinds[k][1:]]
    return [(etype, [SpanEdit(e.start, e.end, e.replacement, e.error_type, "inject:" + kind) for e in edits])
            for kind, (etype, edits) in ranked]


def _ed(s: int, e: int, rep: str, etype: str) -> SpanEdit:
    return SpanEdit(s, e, rep, etype, "inject")


def _replace_sentence(ctx: EditContext, sent: tuple[int, int], text: str, etype: str) -> SpanEdit:
    body = sentence(text, ctx.style)
    return SpanEdit(sent[0], sent[1], body, etype, "inject")


def _deny_sentence(ctx: EditContext, f) -> SpanEdit | None:
    """ "there is a calcified granuloma in the right base ." -> "no calcified granuloma is seen ."."""
    sent = ctx.sentence_of(f.start)
    if sent is None or len(in_sentence(ctx, sent)) != 1:
        return None
    name = ctx.text[f.start:f.end]
    if not name[:1].isalpha():
        return None
    verb = "are" if name.lower().endswith("s") and not name.lower().endswith(("sis", "us", "ss")) else "is"
    return _replace_sentence(ctx, sent, f"no {name.lower()} {verb} seen", "missed_finding")


def _new_before(ctx: EditContext, f) -> SpanEdit | None:
    """ "there is a calcified granuloma" -> "there is a new calcified granuloma" (an invented prior)."""
    i, _k = tok_range(ctx, f.start, f.end)
    if i < 1:
        return None
    j = i
    while j > 0 and ctx.tokens[j - 1].lower in {"small", "mild", "large", "calcified", "left", "right", "focal",
                                                "patchy", "moderate", "bilateral", "minimal", "tiny"}:
        j -= 1
    if j == 0 or ctx.tokens[j - 1].lower not in {"a", "an", "is", "are", "of", "with", "there"}:
        return None
    art = ctx.tokens[j - 1]
    if art.lower == "an":
        return SpanEdit(art.start, ctx.tokens[j].start, match_case("a", art.text) + " new ", "false_comparison",
                        "inject")
    t = ctx.tokens[j]
    return SpanEdit(t.start, t.start, "new ", "false_comparison", "inject")


def _stable_for_normal(ctx: EditContext, cue: tuple[int, int]) -> SpanEdit | None:
    """ "heart size is normal" -> "heart size is stable" (normal said as if seen before)."""
    i, k = tok_range(ctx, *cue)
    if i < 1 or ctx.tokens[i - 1].lower not in {"is", "are"}:
        return None
    if ctx.text[cue[0]:cue[1]].lower() not in {"normal", "unremarkable", "within normal limits"}:
        return None
    nxt = ctx.tokens[k].lower if k < len(ctx.tokens) else "."
    if nxt not in {".", ";", ","}:
        return None
    return SpanEdit(cue[0], cue[1], match_case("stable", ctx.text[cue[0]:cue[1]]), "false_comparison", "inject")
