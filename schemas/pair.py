"""The output records (CONTRACT.md sections 3-4) and their one explicit Arrow schema.

The writer builds tables with ``pa.Table.from_pylist(rows, schema=PAIR_SCHEMA)``; it never infers.
``tests/test_schemas.py`` checks that the dataclass fields and the schema agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pyarrow as pa

SCHEMA_VERSION = "1.0"

ERROR_TYPES = (
    "false_finding",
    "missed_finding",
    "wrong_location",
    "wrong_severity",
    "false_comparison",
    "missed_comparison",
    "wrong_answer",
)

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

EDIT_TYPE = pa.struct(
    [
        ("rejected_start", pa.int32()),
        ("rejected_end", pa.int32()),
        ("chosen_start", pa.int32()),
        ("chosen_end", pa.int32()),
        ("error_type", pa.string()),
        ("before", pa.string()),
        ("after", pa.string()),
    ]
)

CORRUPTION_TYPE = pa.struct(
    [
        ("method", pa.string()),
        ("mask_fraction", pa.float32()),
        ("regions", pa.list_(pa.list_(pa.int32()))),
        ("source", pa.string()),
        ("seed", pa.int64()),
        ("masks", pa.list_(pa.binary())),  # PNG of each image's mask (255 inside), same order as images
        ("reason", pa.string()),  # why no corrupted image was made, when none was
    ]
)

PAIR_SCHEMA = pa.schema(
    [
        ("pair_id", pa.string()),
        ("sample_id", pa.string()),
        ("task", pa.string()),
        ("prompt", pa.string()),
        ("images", pa.list_(IMAGE_TYPE)),
        ("corrupted_images", pa.list_(IMAGE_TYPE)),
        ("corruption", CORRUPTION_TYPE),
        ("chosen", pa.string()),
        ("rejected", pa.string()),
        ("on_policy", pa.string()),
        ("reference", pa.string()),
        ("edits", pa.list_(EDIT_TYPE)),
        ("error_types", pa.list_(pa.string())),
        ("chosen_input_ids", pa.list_(pa.int32())),
        ("rejected_input_ids", pa.list_(pa.int32())),
        ("chosen_token_mask", pa.list_(pa.int8())),
        ("rejected_token_mask", pa.list_(pa.int8())),
        ("meta", pa.string()),
    ],
    metadata={"medpref_schema_version": SCHEMA_VERSION},
)

REJECT_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("response_index", pa.int32()),  # -1 when the whole sample was rejected
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ],
    metadata={"medpref_schema_version": SCHEMA_VERSION},
)


@dataclass
class Edit:
    rejected_start: int
    rejected_end: int
    chosen_start: int
    chosen_end: int
    error_type: str
    before: str
    after: str


@dataclass
class Corruption:
    method: str | None = None
    mask_fraction: float | None = None
    regions: list[list[int]] = field(default_factory=list)
    source: str | None = None
    seed: int | None = None
    masks: list[bytes] = field(default_factory=list)
    reason: str | None = None


@dataclass
class ImageRef:
    bytes: bytes | None
    path: str | None


@dataclass
class PairRecord:
    pair_id: str
    sample_id: str
    task: str
    prompt: str
    images: list[ImageRef]
    corrupted_images: list[ImageRef]
    corruption: Corruption
    chosen: str
    rejected: str
    on_policy: str  # "rejected" or "chosen"
    reference: str
    edits: list[Edit]
    error_types: list[str]
    chosen_input_ids: list[int]
    rejected_input_ids: list[int]
    chosen_token_mask: list[int]
    rejected_token_mask: list[int]
    meta: str  # JSON

    def to_row(self) -> dict:
        return asdict(self)


@dataclass
class RejectRecord:
    sample_id: str
    stage: str
    reason: str
    detail: str
    response_index: int = -1

    def to_row(self) -> dict:
        return asdict(self)


def pairs_table(records: list[PairRecord]) -> pa.Table:
    return pa.Table.from_pylist([r.to_row() for r in records], schema=PAIR_SCHEMA)


def rejects_table(records: list[RejectRecord]) -> pa.Table:
    return pa.Table.from_pylist([r.to_row() for r in records], schema=REJECT_SCHEMA)
