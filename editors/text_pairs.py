"""The text half of a pair: detect clinical errors, edit them minimally, verify every edit.

Verification is the contract: an edit is kept only if, after re-extracting the edited text, its
error is gone and no error that was not there before has appeared. A response with no error gets
one verified injected error instead (`on_policy = "chosen"`), as in FiRe-MPO.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from clinical.errors import ClinicalError, detect_errors
from clinical.extract.registry import get_extractor
from clinical.findings import ReportFindings, findings_from_extraction
from clinical.fluency import edit_problems
from clinical.metrics import word_edit_ratio
from editors.apply import absorb, apply_edits, combine, edit_records
from editors.base import EditContext, SpanEdit
from editors.finish import dedupe_inserted, drop_connectives, drop_orphans, unglue
from editors.inject import injection_candidates
from editors.registry import DEFAULT_EDITORS, get_editor
from editors.response_checks import refuses, repeats, several_reports
from schemas.text_pair import TextPair, TextPairError


@dataclass
class Analysis:
    """Errors of one text against the reference, with what produced them."""

    text: str
    findings: ReportFindings
    errors: list[ClinicalError]
    # incidental findings of the reference the text leaves out: recorded with the pair, never edited in
    minor: list[ClinicalError] = field(default_factory=list)

    @property
    def keys(self) -> set[tuple]:
        return {e.key for e in self.errors}


class TextPairMaker:
    def __init__(self, config: Any = None, style_model: str | None = None):
        extractor = getattr(config, "extractor", "rules")
        lexicon = getattr(config, "lexicon", None)
        self.extractor = get_extractor(extractor, lexicon=lexicon)
        self.lexicon = self.extractor.lexicon
        names = getattr(config, "editors", None) or DEFAULT_EDITORS
        self.editors = [get_editor(n, config) for n in names]
        self.inject_when_correct = getattr(config, "inject_when_correct", True)
        self.max_chars = getattr(config, "max_response_chars", 100_000)
        self.comparisons = getattr(config, "comparisons", True)
        self.max_edit_ratio = getattr(config, "max_edit_ratio", 0.9)
        self.insert_incidental = getattr(config, "insert_incidental", False)
        self._ref_cache: dict[str, ReportFindings] = {}
        self.style = None
        if style_model:
            from editors.policy_style import PolicyStyle

            self.style = PolicyStyle(style_model, margin=getattr(config, "style_margin", 2.0))
        self._scope: set[str] | None = None
        self._seed = 0

    # -- analysis ---------------------------------------------------------------------------
    def findings(self, text: str) -> ReportFindings:
        return findings_from_extraction(self.extractor.extract(text), self.lexicon)

    def reference_findings(self, reference: str) -> ReportFindings:
        ref = self._ref_cache.get(reference)
        if ref is None:
            if len(self._ref_cache) > 4096:
                self._ref_cache.clear()
            ref = self._ref_cache[reference] = self.findings(reference)
        return ref

    def analyse(self, text: str, ref: ReportFindings, scope: set[str] | None = None) -> Analysis:
        f = self.findings(text)
        errors = detect_errors(f, ref, self.lexicon, self.comparisons, scope)
        # a label list (scope) names only what its labellers thought worth a label: every label counts
        minor = [] if self.insert_incidental or scope is not None else [
            e for e in errors if e.kind == "omitted" and e.concept in self.lexicon.incidental]
        return Analysis(text, f, [e for e in errors if e not in minor], minor)

    def scope_of(self, scope_text: str | None) -> set[str] | None:
        """The concepts a label-only ground truth covers, read from its label sentences."""
        if not scope_text or not isinstance(scope_text, str):
            return None
        return {f.concept for f in self.reference_findings(scope_text).findings} or None

    # -- the stage -----------------------------------------------------------------------------
    def make(self, response: str, reference: str, task: str = "report", prompt: str = "", seed: int = 0,
             candidates: list[str] | None = None, scope: str | None = None) -> TextPair:
        """One pair from one response. ``candidates``: plausible wrong answers for a right VQA answer
        (the importers put the dataset's other answers to the same kind of question in
        ``meta.answer_candidates``). ``scope``: for a label-only reference, the label vocabulary as
        sentences (``meta.reference_scope``); errors are judged only within it."""
        if task not in ("report", "vqa"):
            raise TextPairError("unsupported_task", f"task {task!r} has no text editor; valid tasks: report, vqa")
        if not response or not response.strip():
            raise TextPairError("empty_response", "the response is empty")
        if len(response) > self.max_chars:
            raise TextPairError("response_too_long",
                                f"response has {len(response)} characters (limit {self.max_chars})")
        if task == "vqa":
            from editors.vqa_pairs import make_vqa_pair

            return make_vqa_pair(response, reference, prompt, seed,
                                 candidates=candidates if isinstance(candidates, list) else None)
        if refuses(response):
            raise TextPairError("refusal", "the response declines to read the image: no report to correct")
        if repeats(response):
            raise TextPairError("repetitive_response", "the response repeats one sentence three times or more "
                                "(a generation loop): not one answer to edit")
        if several_reports(response):
            raise TextPairError("several_reports", "the response holds several reports one after another "
                                "(blank lines between them): not one answer to edit")
        ref = self.reference_findings(reference)
        self._scope = self.scope_of(scope)
        before = self.analyse(response, ref, self._scope)
        self._seed = seed
        if not before.errors:
            return self._inject(response, reference, ref, before, seed)
        return self._fix(response, reference, ref, before)

    def _fix(self, response: str, reference: str, ref: ReportFindings, before: Analysis) -> TextPair:
        ctx = EditContext.build(response, before.findings, reference, ref, self.lexicon)
        ctx.label_only = self._scope is not None
        # every statement some fix removes: two wrong statements in one sentence take it together
        ctx.doomed = {sp for e in before.errors if e.error_type in ("false_finding", "false_comparison")
                      for sp in e.spans}
        ctx.doomed |= {(f.start, f.end) for e in before.errors if e.error_type == "missed_finding" for f in e.findings}
        accepted: list[SpanEdit] = []
        current = before
        fixed: list[ClinicalError] = []
        unfixed: dict[str, str] = {}
        quick = self._all_at_once(response, ref, before, ctx)
        ctx.covered = set()  # the plan's bookkeeping; the error-by-error loop verifies each insertion itself
        if quick is not None:
            accepted, current = quick
            fixed = list(before.errors)
        for err in sorted(before.errors if quick is None else [], key=_priority):
            if err.key not in current.keys:
                fixed.append(err)  # an earlier edit fixed it too
                continue
            why = "no editor proposed an edit"
            for editor in self.editors:
                if err.error_type not in editor.error_types:
                    continue
                proposal = editor.propose(err, ctx)
                if not proposal:
                    continue
                merged = combine(accepted, proposal) or absorb(accepted, proposal)
                if merged is None:
                    why = f"{editor.name}: overlaps an accepted edit"
                    continue
                trial = apply_edits(response, merged)
                after = self.analyse(trial, ref, self._scope)
                new = after.keys - current.keys
                if err.key in after.keys:
                    why = f"{editor.name}: error still present after the edit"
                elif new:
                    why = f"{editor.name}: edit added {sorted(k[0] for k in new)}"
                else:
                    accepted = merged
                    current = after
                    fixed.append(err)
                    break
            else:
                unfixed[_key_str(err.key)] = why
        refused = [r for ed in self.editors for r in getattr(ed, "refusals", [])]
        for ed in self.editors:
            if hasattr(ed, "refusals"):
                ed.refusals.clear()
        if not accepted:
            if all(e.error_type == "missed_finding" and e.kind == "omitted" for e in before.errors):
                # it only leaves findings out and none can go in whole: nothing in it is wrong, so it is
                # the chosen side of an injected error (the omissions are recorded with the pair)
                return self._inject(response, reference, ref, before, self._seed)
            raise TextPairError("edit_unverified",
                                f"{len(before.errors)} error(s) found, none fixed: " + "; ".join(unfixed.values()))
        # an omission left unfixed is incomplete, not wrong: chosen contradicts nothing, the pair stands
        omitted = {_key_str(e.key) for e in before.errors if e.error_type == "missed_finding" and e.kind == "omitted"}
        left = {k: v for k, v in unfixed.items() if k in omitted}
        left.update({_key_str(e.key): _INCIDENTAL for e in before.minor})
        unfixed = {k: v for k, v in unfixed.items() if k not in omitted}
        if unfixed:
            raise TextPairError("residual_error", f"{len(unfixed)} of {len(before.errors)} error(s) could not be "
                                "fixed, so chosen would still contradict the reference: "
                                + "; ".join(f"{k} ({v})" for k, v in unfixed.items()))
        accepted = unglue(response, self._in_place(response, ref, drop_connectives(drop_orphans(accepted, ctx), ctx),
                                                   current, ctx))
        chosen = apply_edits(response, accepted)
        problems = edit_problems(response, chosen)
        if problems:
            raise TextPairError("not_fluent", "the edited chosen side does not read as report text: "
                                + "; ".join(problems[:3]))
        off = self.style.problems(response, chosen) if self.style is not None else []
        if off:
            raise TextPairError("off_policy_style", "an edited sentence is far less likely under the policy "
                                "than its own: " + "; ".join(off[:2]))
        # an upper bound first: each edit changes at most its words plus the two it may split
        words = max(len(response.split()), len(chosen.split()), 1)
        bound = sum(max(len(e.replacement.split()), len(response[e.start:e.end].split())) + 2 for e in accepted)
        ratio = word_edit_ratio(response, chosen) if bound / words > self.max_edit_ratio else 0.0
        if ratio > self.max_edit_ratio or not any(c.isalpha() for c in chosen):
            raise TextPairError("edit_not_minimal", f"the verified edits rewrite {ratio:.0%} of the words "
                                                    f"(limit {self.max_edit_ratio:.0%}): not a fine-grained pair")
        edits = edit_records(response, accepted, original_is_rejected=True)
        return TextPair(
            chosen=chosen,
            rejected=response,
            on_policy="rejected",
            edits=edits,
            error_types=sorted({e.error_type for e in fixed}),
            locations=_locations(fixed, ref),
            notes={"errors_found": len(before.errors), "errors_fixed": len(fixed),
                   "omissions_left": left, "extractor": self.extractor.name,
                   **({"llm_refused": refused} if refused else {}),
                   "editors": sorted({e.editor for e in accepted})},
        )

    def _in_place(self, response: str, ref: ReportFindings, accepted: list[SpanEdit], current: Analysis,
                  ctx: EditContext) -> list[SpanEdit]:
        """A missed finding takes the place of a wrong sentence that goes, as a radiologist corrects a
        report: fewer words change and the finding stands among the findings. Kept only if the
        re-extraction says exactly what the verified edits said."""
        deduped = dedupe_inserted(accepted)
        inserts = [e for e in deduped if e.start == e.end and e.editor == "insertion"]
        holes = [e for e in deduped if e.start < e.end and not e.replacement
                 and any(e.start <= s and t <= e.end for s, t in ctx.sentences)]
        if not inserts or not holes:
            if deduped == accepted:
                return accepted
            holes, inserts = [], []
        moved = [e for e in deduped if e not in inserts and e not in holes]
        for k, hole in enumerate(holes):
            if k < len(inserts):
                body = ctx.text[hole.start:hole.end]
                lead, trail = body[: len(body) - len(body.lstrip())], body[len(body.rstrip()):]
                text = inserts[k].replacement.strip()
                trail = trail or ("" if hole.end >= len(ctx.text.rstrip()) else " ")
                moved.append(SpanEdit(hole.start, hole.end, lead + text + trail, inserts[k].error_type, "insertion"))
            else:
                moved.append(hole)
        moved.extend(inserts[len(holes):])
        moved.sort(key=lambda e: (e.start, e.end))
        try:
            trial = apply_edits(response, moved)
        except ValueError:
            return accepted
        if self.analyse(trial, ref, self._scope).keys != current.keys or edit_problems(response, trial):
            return accepted
        return moved

    def _all_at_once(self, response: str, ref: ReportFindings, before: Analysis,
                     ctx: EditContext) -> tuple[list[SpanEdit], Analysis] | None:
        """The common case in one re-extraction: every error's first proposal, applied together, fixes
        every error and adds none. Otherwise the caller verifies error by error."""
        merged: list[SpanEdit] = []
        planned: set[str] = set()
        for err in sorted(before.errors, key=_priority):
            if err.error_type == "missed_finding" and err.concept in planned and not err.findings:
                continue  # a reference sentence going in for another finding states this one too
            for editor in self.editors:
                if err.error_type not in editor.error_types:
                    continue
                proposal = editor.propose(err, ctx)
                if proposal:
                    nxt = combine(merged, proposal)
                    if nxt is None:
                        return None
                    merged = nxt
                    for ed in proposal:
                        if ed.replacement.strip():
                            planned |= {f.concept for f in self.findings(ed.replacement).findings if f.positive}
                    ctx.covered = set(planned)
                    break
            else:
                return None
        ctx.covered = set()
        after = self.analyse(apply_edits(response, merged), ref, self._scope)
        return (merged, after) if merged and not after.errors else None

    def _inject(self, response: str, reference: str, ref: ReportFindings, before: Analysis, seed: int) -> TextPair:
        if not self.inject_when_correct:
            raise TextPairError("no_error", "the response has no clinical error and injection is off")
        ctx = EditContext.build(response, before.findings, reference, ref, self.lexicon)
        rng = random.Random(seed)
        for etype, edits in injection_candidates(ctx, rng):
            rejected = apply_edits(response, edits)
            after = self.analyse(rejected, ref, self._scope)
            added = [e for e in after.errors if e.key not in before.keys]
            if len(added) == 1 and added[0].error_type == etype and before.keys <= after.keys \
                    and not _contradicts_itself(before.findings, after.findings) \
                    and not edit_problems(response, rejected) \
                    and not (self.style is not None and self.style.problems(response, rejected)):
                return TextPair(
                    chosen=response,
                    rejected=rejected,
                    on_policy="chosen",
                    edits=edit_records(response, edits, original_is_rejected=False),
                    error_types=[etype],
                    locations=_locations(added, ref),
                    notes={"errors_found": 0, "injected": etype, "injection": edits[0].editor.split(":")[-1],
                           "extractor": self.extractor.name,
                           **({"omissions_left": sorted(_key_str(k) for k in before.keys | {e.key for e in before.minor})}
                              if before.keys or before.minor else {})},
                )
        raise TextPairError("no_error", "the response has no clinical error and no verifiable error could be injected")


_INCIDENTAL = "incidental finding: its omission is clinically insignificant, so nothing is pasted in"
_ORDER = {"wrong_location": 0, "wrong_severity": 1, "false_finding": 2, "missed_finding": 3,
          "false_comparison": 4}


def _priority(err: ClinicalError) -> tuple:
    return (_ORDER.get(err.error_type, 9), err.spans[0] if err.spans else (1 << 30, 0))


def _contradicts_itself(before: ReportFindings, after: ReportFindings) -> bool:
    """An injected finding that the response denies elsewhere makes a rejected side no report would be."""
    def both(fs: ReportFindings) -> set[str]:
        pos = {f.concept for f in fs.findings if f.positive}
        return pos & {f.concept for f in fs.findings if not f.positive}

    return bool(both(after) - both(before))


def _key_str(key: tuple) -> str:
    return ":".join(str(k) for k in key)


def _locations(errors: list[ClinicalError], ref: ReportFindings) -> list[dict]:
    """Anatomy of the findings the pair is about, for report-driven lesion masks."""
    diseased = sorted({lat for f in ref.findings if f.positive for lat in f.laterality})
    out: dict[tuple, dict] = {}
    for err in errors:
        for f in list(err.ref_findings) + list(err.findings):
            if f.category == "denial":
                continue
            loc = {"concept": f.concept, "laterality": next(iter(sorted(f.laterality)), None),
                   "zone": next(iter(sorted(f.zones)), None), "diseased_sides": diseased}
            out.setdefault((loc["concept"], loc["laterality"], loc["zone"]), loc)
    return list(out.values())
