"""Swap editors: one word changes, the laterality or the severity, to the reference's."""

from __future__ import annotations

from clinical.errors import ClinicalError
from editors.base import EditContext, SpanEdit
from editors.style import match_case

_LAT_WORD = {"left": "left", "right": "right", "bilateral": "bilateral"}


class SwapLocation:
    name = "location"
    error_types = ("wrong_location",)

    def propose(self, error: ClinicalError, ctx: EditContext) -> list[SpanEdit] | None:
        if error.want not in ("left", "right"):
            return None  # one side for both, or both for one, changes the finding, not its side word
        edits = []
        for s, e in error.spans:
            old = ctx.text[s:e]
            low = old.lower()
            if low.split("-")[0].split(" ")[0] not in ("left", "right"):
                return None  # "bilaterally" -> "on the left" reads as a different finding
            suffix = ""
            for suf in ("-sided", " sided"):
                if low.endswith(suf):
                    suffix = old[len(old) - len(suf):]
            word = _LAT_WORD[error.want]
            if low in ("bilaterally",):
                word = {"left": "on the left", "right": "on the right"}.get(error.want, word)
            if suffix and error.want == "bilateral":
                suffix = ""
            edits.append(SpanEdit(s, e, match_case(word, old) + suffix, error.error_type, self.name))
        return sorted(set(edits), key=lambda x: x.start)


class SwapSeverity:
    name = "severity"
    error_types = ("wrong_severity",)

    def propose(self, error: ClinicalError, ctx: EditContext) -> list[SpanEdit] | None:
        if not error.want:
            return None
        want = int(error.want)
        ref_words = [ctx.reference[r.severity_span[0]:r.severity_span[1]] for r in error.ref_findings
                     if r.severity == want and r.severity_span]
        if not ref_words:
            return None
        word = ref_words[0].lower()
        edits = []
        for s, e in error.spans:
            old = ctx.text[s:e]
            w = word
            if old.lower().endswith("ly") and not w.endswith("ly"):
                w = {"small": "mildly", "large": "markedly", "mild": "mildly", "moderate": "moderately",
                     "severe": "severely", "marked": "markedly", "minimal": "minimally"}.get(w, w)
            elif not old.lower().endswith("ly") and w.endswith("ly"):
                w = {"mildly": "mild", "moderately": "moderate", "severely": "severe", "markedly": "marked",
                     "slightly": "slight"}.get(w, w)
            edits.append(SpanEdit(s, e, match_case(w, old), error.error_type, self.name))
        return edits
