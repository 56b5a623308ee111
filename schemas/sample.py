"""The input record: one line of the sample manifest (CONTRACT.md section 1).

Parsing is strict about the fields the pipeline needs and lenient about the rest: unknown keys are
moved into ``meta`` (the contract says they are kept, never an error).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

TASKS = ("report", "vqa")


class Lesion(BaseModel):
    """A lesion annotation in pixel coordinates of ``images[image]``."""

    model_config = ConfigDict(extra="allow")

    label: str | None = None
    box: list[float] | None = None  # [x1, y1, x2, y2]
    polygon: list[list[float]] | None = None  # [[x, y], ...]
    image: int = 0


class Sample(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sample_id: str
    task: Literal["report", "vqa"]
    prompt: str = ""
    images: list[str] = Field(default_factory=list)
    reference: str
    responses: list[str] | None = None
    lesions: list[Lesion] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("sample_id")
    @classmethod
    def _nonempty_id(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must be a non-empty string")
        return v


_KNOWN = set(Sample.model_fields)


class SampleError(ValueError):
    """A manifest line that cannot become a Sample; ``reason`` is the rejects-ledger code."""

    def __init__(self, sample_id: str, field: str, reason: str, detail: str):
        super().__init__(f"sample {sample_id!r}: field {field!r}: {detail}")
        self.sample_id = sample_id
        self.field = field
        self.reason = reason
        self.detail = detail


def parse_sample(raw: dict[str, Any] | str | bytes, line_no: int | None = None) -> Sample:
    """Parse one manifest record; raise SampleError naming the record and the field."""
    fallback_id = f"line-{line_no}" if line_no is not None else "<unknown>"
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SampleError(fallback_id, "<line>", "invalid_utf8", f"not valid UTF-8 ({e.reason} at byte {e.start})") from e
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise SampleError(fallback_id, "<line>", "invalid_json", f"invalid JSON: {e.msg} at column {e.colno}") from e
    if not isinstance(raw, dict):
        raise SampleError(fallback_id, "<line>", "invalid_json", "a manifest line must be a JSON object")
    sid = raw.get("sample_id")
    sid = sid if isinstance(sid, str) and sid.strip() else fallback_id
    data = {k: v for k, v in raw.items() if k in _KNOWN}
    extra = {k: v for k, v in raw.items() if k not in _KNOWN}
    meta = data.get("meta")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise SampleError(sid, "meta", "invalid_field", "must be a JSON object")
    data["meta"] = {**meta, **extra}
    if "task" in data and data["task"] not in TASKS:
        raise SampleError(sid, "task", "unknown_task", f"unknown task {data['task']!r}; valid tasks: {', '.join(TASKS)}")
    if not isinstance(data.get("reference"), str) or not data.get("reference", "").strip():
        raise SampleError(sid, "reference", "missing_reference", "reference is missing or empty")
    try:
        return Sample.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "<record>"
        raise SampleError(sid, field, "invalid_field", err["msg"]) from e
