"""Record types and the explicit Arrow schemas of medpref (see CONTRACT.md)."""

from schemas.extraction import Certainty, Entity, Extraction, Extractor, Relation
from schemas.pair import (
    ERROR_TYPES,
    PAIR_SCHEMA,
    REJECT_SCHEMA,
    SCHEMA_VERSION,
    Corruption,
    Edit,
    ImageRef,
    PairRecord,
    RejectRecord,
    pairs_table,
    rejects_table,
)
from schemas.sample import Lesion, Sample, SampleError, parse_sample
from schemas.text_pair import TextPair, TextPairError

__all__ = [
    "Certainty", "Entity", "Extraction", "Extractor", "Relation", "ERROR_TYPES", "PAIR_SCHEMA",
    "REJECT_SCHEMA", "SCHEMA_VERSION", "Corruption", "Edit", "ImageRef", "PairRecord", "RejectRecord",
    "pairs_table", "rejects_table", "Lesion", "Sample", "SampleError", "parse_sample", "TextPair", "TextPairError",
]
