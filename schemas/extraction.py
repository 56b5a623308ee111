"""RadGraph-schema extraction output, with half-open character offsets on the exact input string.

Every extractor (the rule-based default, the ``radgraph`` model adapter) returns this, so error
detection never knows which one ran. RadGraph's inclusive word indices are converted to character
offsets once, in its adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

EntityKind = Literal["Anatomy", "Observation"]
Certainty = Literal["present", "absent", "uncertain"]
RelationKind = Literal["modify", "located_at", "suggestive_of"]

# RadGraph's label spellings ("definitely present" in RadGraph 1, "present" in some outputs) map here.
CERTAINTY_FROM_RADGRAPH = {
    "definitely present": "present",
    "present": "present",
    "definitely absent": "absent",
    "absent": "absent",
    "uncertain": "uncertain",
}


@dataclass(frozen=True)
class Entity:
    id: str
    text: str  # == source_text[start:end]
    start: int
    end: int
    kind: EntityKind
    certainty: Certainty
    concept: str | None = None  # normalised key ("pleural_effusion", "left", "lower_zone", ...), when known
    category: str | None = None  # finding, device, anatomy, laterality, zone, severity, change, comparison, ...

    @property
    def label(self) -> str:
        """The RadGraph label string, e.g. ``Observation::definitely absent``."""
        word = {"present": "definitely present", "absent": "definitely absent", "uncertain": "uncertain"}
        return f"{self.kind}::{word[self.certainty]}"


@dataclass(frozen=True)
class Relation:
    kind: RelationKind
    source: str  # entity id
    target: str  # entity id


@dataclass
class Extraction:
    text: str
    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)

    def by_id(self) -> dict[str, Entity]:
        return {e.id: e for e in self.entities}


class Extractor(Protocol):
    """Turns report text into RadGraph-schema entities and relations."""

    name: str

    def extract(self, text: str) -> Extraction: ...
