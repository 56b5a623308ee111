"""Error injection: when a response is already right, make its rejected twin with one clinical error.

FiRe-MPO does the same for correct samples. The injected error is one of a laterality swap, a
severity swap, a dropped negation or an added negation, chosen by a seeded generator, and it is
verified like a fix: after injection the detector must find exactly that one new error.
"""

from __future__ import annotations

import random

from editors.base import EditContext, SpanEdit
from editors.negation import NegateFinding, negation_cue_before
from editors.style import match_case
from pipeline.errors import ClinicalError

# a word that turns a normal statement about this finding's anatomy into the finding
_ABNORMAL_FOR = {"cardiomegaly": "enlarged", "consolidation": "hyperinflated"}
_FLIP = {"left": "right", "right": "left", "bilateral": "left"}
_SEV_UP = {"small": "large", "mild": "severe", "minimal": "extensive", "trace": "large", "tiny": "large",
           "mildly": "markedly", "moderate": "small", "large": "small", "severe": "mild", "marked": "mild",
           "extensive": "minimal", "slight": "marked", "moderately": "mildly", "markedly": "mildly"}


def injection_candidates(ctx: EditContext, rng: random.Random) -> list[tuple[str, list[SpanEdit]]]:
    cands: list[tuple[str, list[SpanEdit]]] = []
    for f in ctx.findings.findings:
        if f.positive:
            for s, e, _lat in f.laterality_spans:
                old = ctx.text[s:e]
                base = old.lower().split("-")[0].split(" ")[0]
                if base in _FLIP:
                    new = match_case(_FLIP[base], old) + old[len(base):]
                    cands.append(("wrong_location", [SpanEdit(s, e, new, "wrong_location", "inject")]))
            if f.severity_span:
                s, e = f.severity_span
                old = ctx.text[s:e]
                if old.lower() in _SEV_UP:
                    cands.append(("wrong_severity", [SpanEdit(s, e, match_case(_SEV_UP[old.lower()], old),
                                                              "wrong_severity", "inject")]))
            if f.category == "finding":
                neg = NegateFinding().propose(ClinicalError("missed_finding", f.concept, (), findings=[f]), ctx)
                if neg:
                    cands.append(("missed_finding", [SpanEdit(x.start, x.end, x.replacement, "missed_finding",
                                                              "inject") for x in neg]))
        elif f.category == "denial" and f.concept in _ABNORMAL_FOR and f.cue_span:
            # "heart size is normal" -> "heart size is enlarged"; "the lungs are clear" -> "... hyperinflated"
            s, e = f.cue_span
            cue = ctx.text[s:e]
            if cue.lower().startswith("normal ") and cue.lower() != "normal":
                e = s + len("normal")  # "normal in size" -> "enlarged in size"
            cands.append(("false_finding", [SpanEdit(s, e, match_case(_ABNORMAL_FOR[f.concept], cue),
                                                     "false_finding", "inject")]))
        elif f.category == "finding":
            cue = negation_cue_before(ctx, f.start)
            if cue:
                cands.append(("false_finding", [SpanEdit(cue[0], cue[1], "", "false_finding", "inject")]))
    rng.shuffle(cands)
    cands.extend(_false_sentence(ctx, rng))
    return cands


_PLAUSIBLE = ["pleural_effusion", "pneumothorax", "consolidation", "cardiomegaly", "atelectasis", "edema",
              "lung_lesion"]
_SURFACE = {"pleural_effusion": "pleural effusion", "pneumothorax": "pneumothorax", "consolidation":
            "consolidation", "cardiomegaly": "cardiomegaly", "atelectasis": "atelectasis", "edema":
            "pulmonary edema", "lung_lesion": "nodule"}
_WHERE = {"pleural_effusion": True, "pneumothorax": True, "consolidation": True, "atelectasis": True,
          "lung_lesion": True}


def _false_sentence(ctx: EditContext, rng: random.Random) -> list[tuple[str, list[SpanEdit]]]:
    """Last resort: add one short false finding, preferring one the reference explicitly rules out."""
    from editors.insertion import insert_sentence

    denied = [f.concept for f in ctx.ref_findings.findings if not f.positive and f.concept in _SURFACE]
    positive = {f.concept for f in ctx.ref_findings.findings if f.positive}
    pool = [c for c in dict.fromkeys(denied + _PLAUSIBLE) if c not in positive]
    out = []
    for concept in pool[:3]:
        words = [rng.choice(["small", "mild", "minimal"])] if concept != "cardiomegaly" else ["mild"]
        if _WHERE.get(concept):
            words.append(rng.choice(["left", "right"]))
        words.append(_SURFACE[concept])
        ed = insert_sentence(ctx, " ".join(words), "false_finding", "inject")
        out.append(("false_finding", [ed]))
    return out
