"""The clinical lexicon: phrases to (category, concept), loaded from YAML and matched with a trie.

Why a trie over tokens: one left-to-right pass finds the longest phrase at each position, which is
what keeps the rule extractor at thousands of reports per second. The default lexicon lives in
medpref_data/lexicon/chest_xray.yaml; `text.lexicon` in the config swaps in another one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from clinical.extract.tokens import Token, phrase_tokens

DEFAULT_LEXICON = Path(__file__).resolve().parents[2] / "medpref_data" / "lexicon" / "chest_xray.yaml"

# Categories a phrase can carry. Findings and devices are Observations; the rest describe them.
OBSERVATION_CATEGORIES = ("finding", "device", "severity", "comparison", "normal", "abnormal")
ANATOMY_CATEGORIES = ("anatomy", "laterality", "zone")


@dataclass(frozen=True)
class Label:
    category: str
    concept: str


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    prefixes: list[tuple[str, tuple[Label, ...]]] = field(default_factory=list)  # last-word prefixes
    labels: tuple[Label, ...] = ()
    by_head: dict[str, list[tuple[str, tuple[Label, ...]]]] = field(default_factory=dict)  # prefixes by 1st char

    def prefix_hits(self, word: str) -> list[tuple[str, tuple[Label, ...]]]:
        return [pl for pl in self.by_head.get(word[:1], ()) if word.startswith(pl[0])]


@dataclass(frozen=True)
class Match:
    start_tok: int  # first token index
    end_tok: int  # one past the last token
    labels: tuple[Label, ...]


class Lexicon:
    """Phrase lexicon plus the clinical knowledge that goes with it (groups, denials, compatibility)."""

    def __init__(self, data: dict, source: str = "<dict>"):
        self.source = source
        self.root = _Node()
        self.group: dict[str, str] = {}
        self.severity_level: dict[str, int] = {}
        self.surface: dict[str, str] = {}  # concept -> a canonical phrase, for inserted text
        for concept, spec in (data.get("findings") or {}).items():
            self.group[concept] = spec.get("group", "other")
            self.surface[concept] = _canonical(spec["phrases"])
            for p in spec["phrases"]:
                self._add(p, Label("finding", concept))
        for concept, spec in (data.get("devices") or {}).items():
            self.group[concept] = "device"
            self.surface[concept] = _canonical(spec["phrases"])
            for p in spec["phrases"]:
                self._add(p, Label("device", concept))
        for concept, phrases in (data.get("anatomy") or {}).items():
            for p in phrases:
                self._add(p, Label("anatomy", concept))
        for concept, phrases in (data.get("laterality") or {}).items():
            for p in phrases:
                self._add(p, Label("laterality", concept))
        for concept, phrases in (data.get("zones") or {}).items():
            for p in phrases:
                self._add(p, Label("zone", concept))
        for level, phrases in (data.get("severity") or {}).items():
            for p in phrases:
                self._add(p, Label("severity", str(level)))
                self.severity_level[p] = int(level)
        for p in data.get("comparison") or []:
            self._add(p, Label("comparison", "comparison"))
        for p in data.get("normal_words") or []:
            self._add(p, Label("normal", "normal"))
        self.abnormal: dict[str, dict[str, str]] = {}
        for p, by_anatomy in (data.get("abnormal_words") or {}).items():
            self._add(p, Label("abnormal", p))
            self.abnormal[p] = dict(by_anatomy)
        self.normal_denies: dict[str, set[str]] = {
            k: set(v) for k, v in (data.get("normal_denies") or {}).items()
        }
        # chronic incidental findings: their omission is not an error worth an edit (see the YAML)
        self.incidental: set[str] = set(data.get("incidental") or [])
        unknown = sorted(self.incidental - set(self.surface))
        if unknown:
            raise ValueError(f"{source}: `incidental` names unknown concepts {unknown}; "
                             f"valid: {', '.join(sorted(self.surface))}")
        self.compatible: dict[str, set[str]] = {}
        for grp in data.get("compatible") or []:
            for c in grp:
                self.compatible.setdefault(c, set()).update(grp)

    def _add(self, phrase: str, label: Label) -> None:
        prefix = phrase.endswith("*")
        words = phrase_tokens(phrase.rstrip("*"))
        if not words:
            return
        node = self.root
        for w in words[:-1]:
            node = node.children.setdefault(w, _Node())
        last = words[-1]
        if prefix:
            for i, (p, labels) in enumerate(node.prefixes):
                if p == last:
                    if label not in labels:
                        node.prefixes[i] = (p, labels + (label,))
                    break
            else:
                node.prefixes.append((last, (label,)))
            node.by_head = {}
            for p, labels in node.prefixes:
                node.by_head.setdefault(p[:1], []).append((p, labels))
        else:
            child = node.children.setdefault(last, _Node())
            if label not in child.labels:
                child.labels = child.labels + (label,)

    def match(self, tokens: Sequence[Token]) -> list[Match]:
        """Greedy longest matches, left to right, non-overlapping."""
        out: list[Match] = []
        i, n = 0, len(tokens)
        while i < n:
            best: Match | None = None
            node = self.root
            j = i
            while j < n:
                w = tokens[j].lower
                if node.by_head:
                    for _p, labels in node.prefix_hits(w):
                        if best is None or best.end_tok <= j:
                            best = Match(i, j + 1, labels)
                nxt = node.children.get(w)
                if nxt is None:
                    break
                if nxt.labels:
                    best = Match(i, j + 1, nxt.labels)
                node = nxt
                j += 1
            if best is not None:
                out.append(best)
                i = best.end_tok
            else:
                i += 1
        return out

    def compatible_with(self, concept: str) -> set[str]:
        return self.compatible.get(concept, set()) | {concept}


def _canonical(phrases: list[str]) -> str:
    for p in phrases:
        if not p.endswith("*"):
            return p
    return phrases[0].rstrip("*")


def _chexpert_phrases(folder: Path) -> dict:
    """A CheXpert-labeler phrase folder (`mention/<finding>.txt`, one phrase per line) as findings.

    CheXpert phrases are matched as substrings there; here a phrase's last word becomes a prefix."""
    findings: dict[str, dict] = {}
    for f in sorted((folder / "mention").glob("*.txt")):
        if f.stem == "no_finding":
            continue
        phrases = [ln.strip().lstrip("_") for ln in f.read_text().splitlines() if ln.strip()]
        findings[f.stem] = {"phrases": [p if p.endswith("*") else p + "*" for p in phrases]}
    return findings


@lru_cache(maxsize=8)
def load_lexicon(path: str | None = None) -> Lexicon:
    """The default lexicon, another YAML lexicon, or a CheXpert-style phrase folder whose findings
    are added to the default's (anatomy, laterality, zones and rules still come from the default)."""
    p = Path(path) if path else DEFAULT_LEXICON
    try:
        if p.is_dir():
            if not (p / "mention").is_dir():
                raise ValueError(f"lexicon {p}: a folder lexicon needs mention/<finding>.txt files")
            data = yaml.safe_load(DEFAULT_LEXICON.read_text())
            extra = _chexpert_phrases(p)
            for concept, spec in extra.items():
                if concept in data["findings"]:
                    data["findings"][concept]["phrases"] = list(dict.fromkeys(
                        data["findings"][concept]["phrases"] + spec["phrases"]))
                else:
                    data["findings"][concept] = spec
        else:
            data = yaml.safe_load(p.read_text())
    except OSError as e:
        raise ValueError(f"lexicon {p}: cannot read ({e.strerror})") from e
    if not isinstance(data, dict) or "findings" not in data:
        raise ValueError(f"lexicon {p}: expected a YAML mapping with a 'findings' section")
    return Lexicon(data, source=str(p))
