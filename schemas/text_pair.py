"""The text half of a pair, as the text makers return it (``editors.text_pairs``, ``editors.vqa_pairs``),
and the exception that says why a response gave none (its ``reason`` is the rejects-ledger code)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.pair import Edit


class TextPairError(Exception):
    """No pair from this response; `reason` is the rejects-ledger code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class TextPair:
    chosen: str
    rejected: str
    on_policy: str
    edits: list[Edit]
    error_types: list[str]
    locations: list[dict]
    notes: dict[str, Any] = field(default_factory=dict)
