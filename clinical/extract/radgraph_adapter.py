"""The ``radgraph`` extractor: RadGraph's own model, loaded from a local weights folder.

RadGraph re-tokenises the report (its output ``text`` is the tokens joined by spaces) and gives each entity
INCLUSIVE token indices ``start_ix``/``end_ix`` over those tokens. This module is the one place where they
become half-open character offsets on the exact input string, so error detection downstream never sees
RadGraph's tokenisation. Weights are never downloaded: the folder must already hold what radgraph's
loader reads, and a missing file fails at construction with one line naming the folder and the files.
``radgraph`` (and torch) are imported lazily, only when a model is built.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from schemas.extraction import (
    CERTAINTY_FROM_RADGRAPH,
    Certainty,
    Entity,
    EntityKind,
    Extraction,
    Relation,
    RelationKind,
)

log = logging.getLogger(__name__)

MODEL_TYPES = ("radgraph", "radgraph-xl", "modern-radgraph-xl", "echograph")  # what radgraph 0.1.18 accepts
REQUIRED_FILES = ("config.json", "vocabulary/", "weights.th")
RELATION_KINDS: tuple[RelationKind, ...] = ("modify", "located_at", "suggestive_of")

# RadGraph 1 dataset labels are short ("OBS-DA", "ANAT-DP"); the packaged models say "Observation::definitely
# absent", some outputs "Observation::absent", echograph "Observation::measurement::definitely present".
_KIND_WORDS: dict[str, EntityKind] = {
    "anatomy": "Anatomy",
    "anat": "Anatomy",
    "observation": "Observation",
    "obs": "Observation",
}
_SHORT_CERTAINTY: dict[str, Certainty] = {"dp": "present", "da": "absent", "u": "uncertain"}

Span = tuple[int, int]
_UNIT = re.compile(r"\w+|[^\w\s]")  # a word, or one punctuation character


# --------------------------------------------------------------------------------------------------------
# Conversion: RadGraph annotation -> Extraction
# --------------------------------------------------------------------------------------------------------


def radgraph_to_extraction(text: str, annotation: Mapping[str, Any], *, id_prefix: str = "rg") -> Extraction:
    """Convert one RadGraph annotation of ``text`` to an Extraction with character offsets on ``text``.

    ``annotation`` is one document of RadGraph's output (``{"text", "entities": {id: {tokens, label,
    start_ix, end_ix, relations: [[type, target_id]]}}}``). Entity ids become ``id_prefix + RadGraph id``.
    An entity none of whose tokens can be found in ``text`` (the caller's string lacks words of the one
    RadGraph annotated) is dropped with a warning, together with its relations.
    """
    tokens = _tokens_of(annotation)
    entities_in = annotation.get("entities")
    if not isinstance(entities_in, Mapping):
        raise ValueError("RadGraph annotation: field 'entities' must be a mapping of id -> entity")
    spans = align_tokens(text, tokens)

    entities: list[Entity] = []
    for rid, raw in sorted(entities_in.items(), key=lambda item: _id_order(item[0])):
        first, last = _token_range(rid, raw, tokens)
        kind, certainty = parse_label(raw.get("label"), rid)
        found = [spans[i] for i in range(first, last + 1) if spans[i] is not None]
        if not found:
            log.warning("RadGraph entity %s (%r) has no counterpart in the input text; dropped", rid, raw.get("tokens"))
            continue
        start, end = found[0][0], found[-1][1]
        entities.append(Entity(f"{id_prefix}{rid}", text[start:end], start, end, kind, certainty))

    kept = {e.id for e in entities}
    relations: list[Relation] = []
    seen: set[Relation] = set()
    for rid, raw in sorted(entities_in.items(), key=lambda item: _id_order(item[0])):
        for rel in raw.get("relations") or []:
            if not isinstance(rel, Sequence) or isinstance(rel, str) or len(rel) != 2:
                raise ValueError(f"RadGraph entity {rid}: field 'relations' holds {rel!r}, expected [type, target_id]")
            kind, target = parse_relation_kind(rel[0], rid), str(rel[1])
            if target not in entities_in:
                raise ValueError(f"RadGraph entity {rid}: field 'relations' targets unknown entity {target!r}")
            relation = Relation(kind, f"{id_prefix}{rid}", f"{id_prefix}{target}")
            if relation.source in kept and relation.target in kept and relation not in seen:
                seen.add(relation)
                relations.append(relation)
    return Extraction(text=text, entities=entities, relations=relations)


def parse_label(label: Any, entity_id: str = "?") -> tuple[EntityKind, Certainty]:
    """``"Observation::definitely absent"``, ``"Observation::absent"``, ``"OBS-DA"``, ... -> (kind, certainty)."""
    kind = certainty = None
    if isinstance(label, str):
        if "::" in label:
            parts = [part.strip().lower() for part in label.split("::")]
            kind, certainty = _KIND_WORDS.get(parts[0]), CERTAINTY_FROM_RADGRAPH.get(parts[-1])
        elif "-" in label:
            head, _, tail = label.strip().lower().partition("-")
            kind, certainty = _KIND_WORDS.get(head), _SHORT_CERTAINTY.get(tail)
    if kind is None or certainty is None:
        raise ValueError(f"RadGraph entity {entity_id}: field 'label' is {label!r}, not an Anatomy/Observation label")
    return kind, certainty  # type: ignore[return-value]


def parse_relation_kind(kind: Any, entity_id: str = "?") -> RelationKind:
    normalised = str(kind).strip().lower().replace("-", "_").replace(" ", "_")
    if normalised not in RELATION_KINDS:
        raise ValueError(
            f"RadGraph entity {entity_id}: relation type {kind!r} is not one of {', '.join(RELATION_KINDS)}"
        )
    return normalised  # type: ignore[return-value]


def _tokens_of(annotation: Mapping[str, Any]) -> list[str]:
    if not isinstance(annotation, Mapping) or not isinstance(annotation.get("text"), str):
        raise ValueError("RadGraph annotation: field 'text' (its space-joined tokens) is missing or not a string")
    return annotation["text"].split()


def _token_range(rid: str, raw: Any, tokens: list[str]) -> tuple[int, int]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"RadGraph entity {rid}: expected a mapping, got {type(raw).__name__}")
    try:
        first, last = int(raw["start_ix"]), int(raw["end_ix"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"RadGraph entity {rid}: fields 'start_ix'/'end_ix' missing or not integers") from None
    if not 0 <= first <= last < len(tokens):
        raise ValueError(
            f"RadGraph entity {rid}: fields 'start_ix'/'end_ix' = {first}/{last} are outside its {len(tokens)} tokens"
        )
    claimed = raw.get("tokens")
    if claimed is not None and str(claimed).split() != tokens[first:last + 1]:
        raise ValueError(
            f"RadGraph entity {rid}: field 'tokens' {claimed!r} differs from its tokens "
            f"{' '.join(tokens[first:last + 1])!r} at {first}..{last}"
        )
    return first, last


def _id_order(rid: str) -> tuple[int, int | str]:
    return (0, int(rid)) if str(rid).isdigit() else (1, str(rid))


# --------------------------------------------------------------------------------------------------------
# Alignment: RadGraph tokens -> character spans on the original string
# --------------------------------------------------------------------------------------------------------


def align_tokens(text: str, tokens: Sequence[str]) -> list[Span | None]:
    """The half-open character span of each token in ``text``, or None where ``text`` has no counterpart.

    Matching ignores case and whitespace. The fast path walks the text token by token (RadGraph's tokens
    are, in order, substrings of the input with whitespace between some of them), first on the text as is,
    then on the text as RadGraph-XL reads it (:func:`radgraph_view`). If both fail, the caller's string
    differs from the one annotated, and a diff places every token it can and leaves the rest None.
    """
    spans = _align_in_order(_fold(text), tokens)
    if spans is None:
        view = _fold(radgraph_view(text))
        spans = _align_in_order(view, tokens) or _align_by_diff(view, tokens)
    return spans


def radgraph_view(text: str) -> str:
    """The text after RadGraph-XL's character rewrites, which all keep the length (so offsets hold):
    literal backslash-n/f and \\u2122 become spaces, newlines spaces, and a backslash-quote two backticks."""
    for old, new in (("\\n", "  "), ("\\f", "  "), ("\\u2122", "      "), ("\n", " "), ('\\"', "``")):
        text = text.replace(old, new)
    return text


def _fold(s: str) -> str:
    """Lower-case without changing the length (``"İ".lower()`` has two characters)."""
    low = s.lower()
    if len(low) == len(s):
        return low
    return "".join(low if len(low := c.lower()) == 1 else c for c in s)


def _align_in_order(folded: str, tokens: Sequence[str]) -> list[Span] | None:
    pos, spans = 0, []
    for token in tokens:
        while pos < len(folded) and folded[pos].isspace():
            pos += 1
        needle = _fold(token)
        if not needle or not folded.startswith(needle, pos):
            return None
        spans.append((pos, pos + len(needle)))
        pos += len(needle)
    return spans


def _align_by_diff(folded: str, tokens: Sequence[str]) -> list[Span | None]:
    """Diff word/punctuation units first (so a token never borrows a letter from a neighbour), then
    characters inside each block the two sides word differently (``effusions`` against ``effusion``)."""
    units = [(m.start(), m.end()) for m in _UNIT.finditer(folded)]
    pieces = [(k, m.group()) for k, token in enumerate(tokens) for m in _UNIT.finditer(_fold(token))]
    bounds: list[list[int] | None] = [None] * len(tokens)

    def mark(k: int, start: int, end: int) -> None:
        span = bounds[k]
        bounds[k] = [start, end] if span is None else [min(span[0], start), max(span[1], end)]

    matcher = difflib.SequenceMatcher(None, [p for _, p in pieces], [folded[s:e] for s, e in units], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for offset in range(i2 - i1):
                mark(pieces[i1 + offset][0], *units[j1 + offset])
        elif tag == "replace":
            owners = [k for k, piece in pieces[i1:i2] for _ in piece]
            places = [p for s, e in units[j1:j2] for p in range(s, e)]
            chars = difflib.SequenceMatcher(
                None, "".join(p for _, p in pieces[i1:i2]), "".join(folded[p] for p in places), autojunk=False
            )
            for a, b, size in chars.get_matching_blocks():
                for offset in range(size):
                    mark(owners[a + offset], places[b + offset], places[b + offset] + 1)
    return [None if span is None else (span[0], span[1]) for span in bounds]


# --------------------------------------------------------------------------------------------------------
# The extractor
# --------------------------------------------------------------------------------------------------------


def check_weights(model_cache_dir: str | os.PathLike | None, model_type: str) -> Path:
    """Return ``<model_cache_dir>/<model_type>`` if it holds what radgraph loads, else fail in one line.

    radgraph itself would try to download into an empty or missing folder (and leave it behind); this
    check runs first so nothing is created and nothing is fetched.
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown RadGraph model_type {model_type!r}; valid: {', '.join(MODEL_TYPES)}")
    if model_cache_dir is None:
        raise FileNotFoundError(
            f"RadGraphExtractor needs model_cache_dir: a folder whose {model_type}/ holds "
            f"{', '.join(REQUIRED_FILES)} (nothing is downloaded)"
        )
    model_dir = Path(model_cache_dir) / model_type
    present = {
        "config.json": (model_dir / "config.json").is_file(),
        "vocabulary/": (model_dir / "vocabulary").is_dir(),
        "weights.th": (model_dir / "weights.th").is_file(),
    }
    missing = [name for name in REQUIRED_FILES if not present[name]]
    if missing:
        raise FileNotFoundError(
            f"RadGraph weights folder {model_dir} lacks {', '.join(missing)}: it needs {', '.join(REQUIRED_FILES)} "
            f"(unpack {model_type}.tar.gz from the StanfordAIMI/RRG_scorers hub repo there; nothing is downloaded)"
        )
    return model_dir


def check_encoder(config_path: Path) -> None:
    """Fail fast when config.json names a BERT encoder that is neither a local folder nor in the HF cache.

    Offline, radgraph would otherwise spend ~23 s in hub retries before failing with a long traceback.
    """
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        names = {
            config["dataset_reader"]["token_indexers"]["bert"]["model_name"],
            config["model"]["embedder"]["token_embedders"]["bert"]["model_name"],
        }
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"RadGraph config {config_path}: not a DyGIE config with a 'bert' encoder ({err})") from None
    for name in sorted(names):
        if Path(name).is_dir():
            continue
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise FileNotFoundError(
                f"RadGraph config {config_path} names the encoder {name!r}, which is neither a local folder "
                "nor in the Hugging Face cache (nothing is downloaded)"
            )


def _cuda_index(device: str) -> int:
    if device == "cpu":
        return -1
    if device == "cuda":
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    raise ValueError(f"RadGraphExtractor: device {device!r} must be 'cpu', 'cuda' or 'cuda:N'")


class RadGraphExtractor:
    """Extractor backed by radgraph's own loading and inference code (``radgraph.RadGraph``)."""

    name = "radgraph"

    def __init__(
        self,
        model_type: str = "radgraph-xl",
        model_cache_dir: str | os.PathLike | None = None,
        *,
        device: str = "cpu",
        id_prefix: str = "rg",
    ) -> None:
        cuda = _cuda_index(device)
        self.model_type = model_type
        self.model_dir = check_weights(model_cache_dir, model_type)
        check_encoder(self.model_dir / "config.json")
        self.id_prefix = id_prefix
        self._model = _load_radgraph(model_type, self.model_dir.parent, cuda)

    def extract(self, text: str) -> Extraction:
        return self.extract_batch([text])[0]

    def extract_batch(self, texts: Sequence[str]) -> list[Extraction]:
        annotations = self.annotate_batch(texts)
        return [
            Extraction(text=text) if ann is None else radgraph_to_extraction(text, ann, id_prefix=self.id_prefix)
            for text, ann in zip(texts, annotations, strict=True)
        ]

    def annotate_batch(self, texts: Sequence[str]) -> list[dict | None]:
        """RadGraph's raw annotation per text (None for a text with no tokens, which RadGraph would
        otherwise replace by the word "None"); what ``radgraph.rewards.compute_reward`` consumes."""
        import torch
        from radgraph.utils import preprocess_reports

        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"RadGraphExtractor: text {i} is {type(text).__name__}, not str")
        todo = [
            i for i, text in enumerate(texts)
            if text.strip() and preprocess_reports([text], self.model_type)[0]["sentences"][0]
        ]
        out: dict[str, dict] = {}
        if todo:
            with torch.no_grad():
                out = self._model([texts[i] for i in todo])
        annotations: list[dict | None] = [None] * len(texts)
        for j, i in enumerate(todo):
            if str(j) not in out:
                raise RuntimeError(f"RadGraphExtractor: radgraph returned no annotation for text {i} (see its log)")
            annotations[i] = out[str(j)]
        return annotations


def _load_radgraph(model_type: str, model_cache_dir: Path, cuda: int):
    try:
        import radgraph
    except ImportError as err:
        raise ImportError(
            f"the 'radgraph' extractor needs the radgraph package ({err}); install medpref[radgraph]"
        ) from err
    from clinical.extract import radgraph_compat

    radgraph_compat.install()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # radgraph prints "Using device: ..." on stdout
        model = radgraph.RadGraph(model_type=model_type, model_cache_dir=str(model_cache_dir), cuda=cuda)
    log.debug("radgraph: %s", printed.getvalue().strip())
    return model
