"""What an editor is: a small object that proposes span edits for one clinical error.

Editors only propose; the text-pair stage applies a proposal, re-extracts, and keeps it only if its
error is gone and no other error appeared. So an editor may be simple and occasionally wrong,
and never needs to know how verification works.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from clinical.errors import ClinicalError
from clinical.extract.lexicon import Lexicon
from clinical.extract.rules import split_clauses
from clinical.extract.tokens import Token, tokenize
from clinical.findings import ReportFindings


@dataclass(frozen=True)
class SpanEdit:
    """Replace text[start:end] with `replacement` (half-open offsets on the text being edited)."""

    start: int
    end: int
    replacement: str
    error_type: str
    editor: str


@dataclass
class Style:
    """How a response writes: "the lungs are clear ." (lower, spaced punctuation) or "Lungs are clear."."""

    lower: bool
    spaced_punct: bool
    commas: bool
    deid_token: str  # "xxxx" or "XXXX"


@dataclass
class EditContext:
    text: str
    findings: ReportFindings
    reference: str
    ref_findings: ReportFindings
    lexicon: Lexicon
    tokens: Sequence[Token] = ()
    sentences: list[tuple[int, int]] = field(default_factory=list)  # char spans incl. final punctuation
    style: Style | None = None
    doomed: set[tuple[int, int]] = field(default_factory=set)  # spans of all false findings: deletable together
    covered: set[str] = field(default_factory=set)  # concepts a sentence already planned for insertion states
    label_only: bool = False  # the reference is a list of labels (NIH): a missed label becomes a short sentence

    @classmethod
    def build(cls, text: str, findings: ReportFindings, reference: str, ref_findings: ReportFindings,
              lexicon: Lexicon) -> EditContext:
        toks = tokenize(text)
        body = re.sub(r"\b(findings|impression|conclusion|comparison|indication|technique)\s*:", "", text,
                      flags=re.IGNORECASE)
        letters = [c for c in body if c.isalpha()]
        style = Style(
            lower=bool(letters) and not any(c.isupper() for c in letters),
            spaced_punct=" ." in text and text.count(" .") >= max(1, text.count(".") // 2),
            commas="," in text,
            deid_token="XXXX" if "XXXX" in text or not text.islower() else "xxxx",
        )
        return cls(text, findings, reference, ref_findings, lexicon, toks, sentence_spans(text), style)

    def sentence_of(self, pos: int) -> tuple[int, int] | None:
        for s, e in self.sentences:
            if s <= pos < e:
                return (s, e)
        return None


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the text's sentences (from the extractor's clause splitter, so editors and
    extraction agree on where a sentence ends)."""
    toks = tokenize(text)
    out: dict[int, list[int]] = {}
    for sent, lo, hi in split_clauses(toks, text):
        if hi > lo:
            span = out.setdefault(sent, [toks[lo].start, toks[hi - 1].end])
            span[1] = toks[hi - 1].end
    return [(s, e) for s, e in out.values()]


class Editor(Protocol):
    name: str
    error_types: tuple[str, ...]

    def propose(self, error: ClinicalError, ctx: EditContext) -> list[SpanEdit] | None: ...
