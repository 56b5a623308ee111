"""Clinical errors of a response against its reference, typed with GREEN's taxonomy.

An error is keyed by what is wrong (type, concept, value), not by where, so that after an edit we
can re-extract and ask "is this error gone, and is no other error new?" — the verification rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clinical.extract.lexicon import Lexicon
from clinical.findings import Finding, ReportFindings


@dataclass
class ClinicalError:
    error_type: str
    concept: str
    key: tuple
    spans: list[tuple[int, int]] = field(default_factory=list)  # where it is in the response (may be empty)
    findings: list[Finding] = field(default_factory=list)  # the response mentions involved
    ref_findings: list[Finding] = field(default_factory=list)  # what the reference says
    want: str | None = None  # the value the reference has (laterality / severity word)
    kind: str = ""  # sub-kind: "denied" / "omitted" for missed findings


def _lat_conflict(resp: set[str], ref: set[str]) -> bool:
    if not resp or not ref:
        return False
    ref_eff = set(ref)
    if {"left", "right"} <= ref_eff:
        ref_eff.add("bilateral")
    if "bilateral" in ref_eff:
        ref_eff |= {"left", "right"} if len(ref_eff) > 1 else set()
    return not resp <= ref_eff


def detect_errors(resp: ReportFindings, ref: ReportFindings, lexicon: Lexicon,
                  comparisons: bool = True, scope: set[str] | None = None) -> list[ClinicalError]:
    """Errors of `resp` against `ref`. `scope`: the concepts the reference can speak about (a label-only
    ground truth such as NIH's 14 labels); findings outside it are neither false nor missed, and
    comparisons are not judged."""
    errors: dict[tuple, ClinicalError] = {}
    if scope is not None:
        resp = ReportFindings(resp.text, [f for f in resp.findings if f.concept in scope], [])
        comparisons = False
    ref_pos: dict[str, list[Finding]] = {}
    for f in ref.findings:
        if f.positive:
            ref_pos.setdefault(f.concept, []).append(f)
    # a reference that both states and explicitly denies a finding ("The lungs focal airspace
    # consolidation. ... No focal airspace consolidation.") cannot judge it: that concept is not judged
    ambiguous = {c for c in ref_pos if any(f.concept == c and f.certainty == "absent" and f.category == "finding"
                                           for f in ref.findings)}
    for c in ambiguous:
        del ref_pos[c]
    resp = ReportFindings(resp.text, [f for f in resp.findings if f.concept not in ambiguous], resp.comparisons)

    def add(etype: str, concept: str, key: tuple, f: Finding | None, span=None, **kw) -> None:
        err = errors.get(key)
        if err is None:
            err = errors[key] = ClinicalError(etype, concept, key, ref_findings=ref_pos.get(concept, []), **kw)
        if f is not None:
            err.findings.append(f)
            err.spans.append(span or (f.start, f.end))

    for f in resp.findings:
        if f.positive:
            compatible = lexicon.compatible_with(f.concept)
            if not any(c in ref_pos for c in compatible):
                add("false_finding", f.concept, ("false_finding", f.concept), f)
                continue
            refs = ref_pos.get(f.concept)
            if not refs:
                continue
            ref_lat = set().union(*(r.laterality for r in refs))
            if _lat_conflict(f.laterality, ref_lat):
                want = sorted(ref_lat)[0] if len(ref_lat) == 1 else ("bilateral" if {"left", "right"} <= ref_lat
                                                                      or "bilateral" in ref_lat else None)
                for s, e, lat in f.laterality_spans:
                    if lat not in ref_lat:
                        add("wrong_location", f.concept, ("wrong_location", f.concept, lat), f, (s, e), want=want)
            ref_sev = {r.severity for r in refs if r.severity is not None}
            if f.severity is not None and ref_sev and f.severity not in ref_sev and f.severity_span:
                add("wrong_severity", f.concept, ("wrong_severity", f.concept, f.severity), f, f.severity_span,
                    want=str(min(ref_sev)))
        elif f.concept in ref_pos:
            add("missed_finding", f.concept, ("missed_finding", f.concept), f, kind="denied")
    resp_pos = {f.concept for f in resp.findings if f.positive}
    for concept in ref_pos:
        if ("missed_finding", concept) in errors:
            continue
        if not resp_pos & lexicon.compatible_with(concept):
            add("missed_finding", concept, ("missed_finding", concept), None, kind="omitted")
    # a missed comparison is not an error: a policy shown one image cannot know the prior exam
    if comparisons:
        if resp.comparisons and not ref.comparisons:
            err = errors.setdefault(("false_comparison",), ClinicalError("false_comparison", "comparison",
                                                                        ("false_comparison",)))
            err.spans.extend(resp.comparisons)
    return list(errors.values())
