"""The ``llm`` editor: a local model rewrites one flagged span of a response, guided by the reference.

Why a model: rule edits cover negation, laterality and severity words; a finding the rules cannot phrase
("small left apical pneumothorax" for a missed one) needs a writer. Why so strict: a preference pair is
only minimal if ``chosen`` and ``rejected`` differ inside the flagged span alone, and models drift (they
fix spelling, drop a trailing period, re-wrap lines). So the model is asked for the whole text with only
the marked span rewritten, and its answer is kept only when every character outside the span is
identical; anything else is refused with a reason. Clinical verification (re-extracting the proposal and
checking that the error is gone and nothing new appeared) is the caller's job.

Any ``Sampler`` backend works (transformers on a CPU, vLLM, the vLLM server): the request is a text-only
sample whose prompt is the instruction below, rendered with the model's own chat template.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from schemas.sample import Sample
from schemas.sampler import Sampler

OPEN, CLOSE = "[[", "]]"

INSTRUCTION = (
    "You correct one error in a radiology report.\n"
    "Reference report (ground truth): {reference}\n"
    "Report to correct: {marked}\n"
    "The part between {open} and {close} contains a {error_type} error. Rewrite only that part so that it "
    "agrees with the reference. Copy everything else exactly, character for character. Answer with the "
    "full corrected report, without the {open} {close} markers, and nothing else."
)
ERROR_HINTS = {
    "false_finding": "false finding (it states something the reference does not)",
    "missed_finding": "missed finding (it leaves out something the reference states)",
    "wrong_location": "wrong location",
    "wrong_severity": "wrong severity",
    "false_comparison": "false comparison with a prior study",
    "missed_comparison": "missed comparison with a prior study",
    "wrong_answer": "wrong answer",
}


@dataclass(frozen=True)
class Proposal:
    """``text``: the full proposed response, or ``None``; ``reason``: why not (a short code + detail)."""

    text: str | None
    reason: str | None = None
    span_text: str | None = None  # the new text of the span when accepted


def check_proposal(response: str, span: tuple[int, int], output: str) -> Proposal:
    """Accept ``output`` as the full rewritten response only if it equals ``response`` outside ``span``.

    Leniency, none of it inside the report: surrounding whitespace the model added or dropped is restored
    to the response's own, and markers the model copied around the new span are removed.
    """
    start, end = span
    prefix, suffix = response[:start], response[end:]
    if not output or not output.strip():
        return Proposal(None, "no_output: the model returned nothing")
    lead = response[: len(response) - len(response.lstrip())]
    trail = response[len(response.rstrip()):]
    for candidate in dict.fromkeys((output, lead + output.strip() + trail)):
        if len(candidate) >= len(prefix) + len(suffix) and candidate.startswith(prefix) and candidate.endswith(suffix):
            new_span = candidate[len(prefix): len(candidate) - len(suffix)]
            if new_span.startswith(OPEN) and new_span.endswith(CLOSE):
                new_span = new_span[len(OPEN): len(new_span) - len(CLOSE)]
            if OPEN in new_span or CLOSE in new_span:
                return Proposal(None, "markers_left: the rewritten span still holds a span marker")
            if new_span == response[start:end]:
                return Proposal(None, "unchanged: the model returned the span as it was")
            return Proposal(prefix + new_span + suffix, None, new_span)
    candidate = lead + output.strip() + trail
    where = _first_difference(prefix, candidate) if not candidate.startswith(prefix) else None
    detail = (f"text before the span differs at offset {where}" if where is not None
              else "text after the span differs")
    return Proposal(None, f"outside_span_changed: {detail}")


def _first_difference(a: str, b: str) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


class LLMSpanRewriter:
    """Asks a sampler's model to rewrite ``response[span]`` given the reference; see ``check_proposal``.

    ``n`` candidates are drawn and the first acceptable one is returned. The seed of a request is derived
    from its content, so the same edit request gets the same proposal on every run.
    """

    name = "llm"

    def __init__(self, sampler: Sampler, *, n: int = 1, seed: int = 0, instruction: str = INSTRUCTION):
        if n < 1:
            raise ValueError("LLMSpanRewriter needs n >= 1")
        self.sampler = sampler
        self.n = n
        self.seed = seed
        self.instruction = instruction
        self.last_reason: str | None = None

    def prompt(self, response: str, span: tuple[int, int], reference: str, error_type: str) -> str:
        start, end = span
        marked = response[:start] + OPEN + response[start:end] + CLOSE + response[end:]
        return self.instruction.format(reference=reference, marked=marked, open=OPEN, close=CLOSE,
                                       error_type=ERROR_HINTS.get(error_type, error_type.replace("_", " ")))

    def propose_with_reason(self, response: str, span: tuple[int, int], reference: str, error_type: str) -> Proposal:
        start, end = span
        if not (0 <= start <= end <= len(response)):
            return Proposal(None, f"invalid_span: {span} is not inside a response of {len(response)} characters")
        if not reference or not reference.strip():
            return Proposal(None, "empty_reference: nothing to correct the span against")
        prompt = self.prompt(response, span, reference, error_type)
        key = hashlib.sha256(json.dumps([response, list(span), reference, error_type]).encode()).hexdigest()[:16]
        request = Sample(sample_id=f"llm-edit-{key}", task="report", prompt=prompt, images=[], reference=reference)
        outputs = (self.sampler.sample([request], self.n, self.seed) or [[]])[0]
        first: Proposal | None = None
        for output in outputs:
            proposal = check_proposal(response, span, output)
            if proposal.text is not None:
                return proposal
            first = first or proposal
        return first or Proposal(None, "no_output: the sampler returned no candidates")

    def propose(self, response: str, span: tuple[int, int], reference: str, error_type: str) -> str | None:
        """The full proposed text, or ``None`` (then ``last_reason`` says why)."""
        proposal = self.propose_with_reason(response, span, reference, error_type)
        self.last_reason = proposal.reason
        return proposal.text


class LLMEditor:
    """The ``llm`` editor: the rewriter behind the Editor protocol, so its proposals go through the same
    re-extraction check as rule edits, and the rule editors after it take over when it is refused.

    Built from the config's ``text.llm`` section (a sampler name and a local model folder). The span it
    rewrites is the sentence holding the error (a missed finding: an empty span at the insertion point).
    Refusals are kept in ``refusals`` so the pair's meta can say why the model's proposal was not used.
    """

    name = "llm"
    error_types = ("false_finding", "missed_finding", "wrong_location", "wrong_severity", "false_comparison",
                   "missed_comparison")

    def __init__(self, config=None):
        llm = getattr(config, "llm", None)
        if llm is None or not getattr(llm, "model", None):
            raise ValueError("editor 'llm' needs text.llm.model (a local model folder) in the config")
        # the section builds its own sampler (pipeline.config.LLMEditorConfig.build_sampler): editors never
        # import the pipeline that registers the backends
        self.rewriter = LLMSpanRewriter(llm.build_sampler(), n=llm.num_candidates, seed=llm.seed)
        self.refusals: list[str] = []

    def propose(self, error, ctx):
        from editors.base import SpanEdit
        from editors.insertion import insertion_point

        if error.spans:
            span = ctx.sentence_of(error.spans[0][0]) or error.spans[0]
        else:
            pos, _ = insertion_point(ctx)
            span = (pos, pos)
        text = self.rewriter.propose(ctx.text, span, ctx.reference, error.error_type)
        if text is None:
            self.refusals.append(f"{error.error_type}: {self.rewriter.last_reason}")
            return None
        new_end = len(text) - (len(ctx.text) - span[1])
        return [SpanEdit(span[0], span[1], text[span[0]:new_end], error.error_type, self.name)]


__all__ = ["LLMEditor", "LLMSpanRewriter", "Proposal", "check_proposal", "INSTRUCTION"]
