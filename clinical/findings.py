"""From RadGraph-schema entities to clinical findings: concept, certainty, laterality, zone, severity.

Why a layer of its own: error detection must not care which extractor ran. The rule extractor
fills `concept`/`category`; for the `radgraph` model they are looked up here from the entity text
with the same lexicon. Normal statements ("lungs are clear") become denials of the findings their
anatomy's group covers ("no consolidation, pneumonia, ...").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clinical.extract.lexicon import Lexicon
from clinical.extract.tokens import tokenize
from schemas.extraction import Entity, Extraction

POSITIVE = ("present", "uncertain")


@dataclass
class Finding:
    concept: str
    certainty: str  # present / absent / uncertain
    start: int  # span of the finding words (or of the normal statement's word) in the text
    end: int
    text: str
    category: str = "finding"  # finding / device / denial (a normal statement)
    laterality: set[str] = field(default_factory=set)
    zones: set[str] = field(default_factory=set)
    severity: int | None = None
    severity_span: tuple[int, int] | None = None
    laterality_spans: list[tuple[int, int, str]] = field(default_factory=list)
    cue_span: tuple[int, int] | None = None  # for a denial: the normal word ("clear", "within normal limits")
    phrase_span: tuple[int, int] | None = None  # words that name it, when wider than the span ("heart is enlarged")

    @property
    def positive(self) -> bool:
        return self.certainty in POSITIVE


@dataclass
class ReportFindings:
    text: str
    findings: list[Finding]
    comparisons: list[tuple[int, int]]  # spans of comparison words

    def positive(self, concept: str) -> list[Finding]:
        return [f for f in self.findings if f.concept == concept and f.positive]

    def negative(self, concept: str) -> list[Finding]:
        return [f for f in self.findings if f.concept == concept and not f.positive]

    def status(self, concept: str) -> str:
        """present / uncertain / absent / unmentioned, positive mentions win."""
        states = {f.certainty for f in self.findings if f.concept == concept}
        for s in ("present", "uncertain", "absent"):
            if s in states:
                return s
        return "unmentioned"


def _classify(ent: Entity, lexicon: Lexicon) -> tuple[str | None, str | None]:
    if ent.category is not None:
        return ent.category, ent.concept
    matches = lexicon.match(tokenize(ent.text.lower()))
    for m in matches:
        for lab in m.labels:
            return lab.category, lab.concept
    return None, None


def findings_from_extraction(ex: Extraction, lexicon: Lexicon) -> ReportFindings:
    cats: dict[str, tuple[str | None, str | None]] = {e.id: _classify(e, lexicon) for e in ex.entities}
    ents = ex.by_id()
    located: dict[str, list[str]] = {}
    modified_by: dict[str, list[str]] = {}
    for r in ex.relations:
        if r.kind == "located_at":
            located.setdefault(r.source, []).append(r.target)
        elif r.kind == "modify":
            # RadGraph: a modifier points at what it modifies; severity -> finding, left -> lung
            modified_by.setdefault(r.target, []).append(r.source)
    findings: list[Finding] = []
    comparisons: list[tuple[int, int]] = []
    for e in ex.entities:
        cat, concept = cats[e.id]
        if cat == "comparison":
            comparisons.append((e.start, e.end))
        elif cat in ("finding", "device") and concept:
            f = Finding(concept, e.certainty, e.start, e.end, e.text, cat)
            targets = list(located.get(e.id, []))
            for t in list(targets):
                targets.extend(modified_by.get(t, []))
            for t in targets:
                tc, tconcept = cats.get(t, (None, None))
                te = ents.get(t)
                if te is None:
                    continue
                if tc == "laterality":
                    f.laterality.add(tconcept)
                    f.laterality_spans.append((te.start, te.end, tconcept))
                elif tc == "zone":
                    f.zones.add(tconcept)
            for m in modified_by.get(e.id, []):
                mc, mconcept = cats.get(m, (None, None))
                if mc == "severity" and mconcept and mconcept.isdigit():
                    f.severity = int(mconcept)
                    f.severity_span = (ents[m].start, ents[m].end)
                elif mc == "laterality":
                    f.laterality.add(mconcept)
                    f.laterality_spans.append((ents[m].start, ents[m].end, mconcept))
            findings.append(f)
        elif cat == "abnormal" and concept in lexicon.abnormal:
            # "the cardiac silhouette is mildly enlarged": a finding named by its anatomy
            for t in located.get(e.id, []):
                tc, tconcept = cats.get(t, (None, None))
                finding = lexicon.abnormal[concept].get(tconcept) if tc == "anatomy" else None
                if finding is None:
                    continue
                te = ents[t]
                f = Finding(finding, e.certainty, e.start, e.end, e.text, "finding",
                            phrase_span=(min(te.start, e.start), max(te.end, e.end)))
                for m in modified_by.get(e.id, []):
                    mc, mconcept = cats.get(m, (None, None))
                    if mc == "severity" and mconcept and mconcept.isdigit():
                        f.severity, f.severity_span = int(mconcept), (ents[m].start, ents[m].end)
                findings.append(f)
                break
        elif (cat == "normal" and e.certainty == "present") or (cat == "abnormality" and e.certainty == "absent"):
            for t in located.get(e.id, []):
                tc, tconcept = cats.get(t, (None, None))
                if tc != "anatomy":
                    continue
                for denied in sorted(lexicon.normal_denies.get(tconcept, ())):
                    te = ents[t]
                    lo, hi = min(te.start, e.start), max(te.end, e.end)
                    findings.append(Finding(denied, "absent", lo, hi, ex.text[lo:hi], "denial",
                                            cue_span=(e.start, e.end)))
    return ReportFindings(ex.text, findings, comparisons)
