"""An independent CheXpert-style labeler for report text, used to check preference pairs.

Why it exists: the pair builder verifies its own edits with the project's extractor
(`pipeline.extract`, `pipeline.findings`). A checker that shares that code would share its blind spots,
so this module shares none of it. It re-implements the CheXpert labeler's recipe with different
machinery: the CheXpert mention / unmention phrase lists (vendored in `medpref_data/chexpert_phrases`,
MIT) matched with a spaCy `PhraseMatcher` on lower-cased tokens, and negation / uncertainty decided by
medspaCy's ConText with a radiology rule set written here (not the project's rules, not medspaCy's
clinical-note defaults).

Labels follow the CheXpert conventions:
- per mention: a "pre-negation" uncertainty cue ("cannot exclude", "no definite", "no new") makes it
  uncertain; otherwise a negation cue makes it negative; otherwise an uncertainty cue ("possible",
  "may", "suggest") makes it uncertain; otherwise positive. This ordering is why "no opacity to
  suggest pneumonia" is negative while "cannot exclude pneumonia" is uncertain.
- per report: positive in any mention wins, then uncertain, then negative; unmentioned observations
  are absent from the result.

Observations are the 13 CheXpert observations (file names of `mention/*.txt`, "No Finding" left out)
plus the "other findings" of `no_finding.txt` (emphysema, granuloma, calcification, scoliosis, ...),
named by `EXTRA_NAMES`.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import spacy
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc, Span

PHRASE_DIR = Path(__file__).resolve().parents[1] / "medpref_data" / "chexpert_phrases"
CHEXPERT_OBSERVATIONS = (
    "atelectasis", "cardiomegaly", "consolidation", "edema", "enlarged_cardiomediastinum", "fracture",
    "lung_lesion", "lung_opacity", "pleural_effusion", "pleural_other", "pneumonia", "pneumothorax",
    "support_devices",
)
# no_finding.txt phrase -> observation name. Phrases not listed are named by their own words.
EXTRA_NAMES = {
    "blunt": "blunting", "degenera": "degenerative", "osteophytosis": "degenerative",
    "arthropathy": "degenerative", "calcifi": "calcification", "hyperinflat": "hyperinflation",
    "hyperexpansion": "hyperinflation", "atherosclero": "atherosclerosis", "inflam": "inflammation",
    "prominen": "prominence", "defib": "defibrillator", "reticula": "reticular",
    "interstitial markings": "interstitial_markings",
}
# Truncated stems in the phrase files (CheXpert matched substrings) -> the whole words they stand for.
# Explicit, so that "tube" does not match "tuberculosis" and "plate" not "platelike".
STEM_COMPLETIONS = {
    "atelecta": ["atelectasis", "atelectases", "atelectatic"],
    "consolidat": ["consolidation", "consolidations", "consolidative", "consolidating", "consolidated"],
    "opaci": ["opacity", "opacities", "opacification", "opacifications", "opacified"],
    "degenera": ["degenerative", "degeneration", "degenerated", "degenerate"],
    "calcifi": ["calcified", "calcification", "calcifications", "calcific"],
    "hyperinflat": ["hyperinflated", "hyperinflation"],
    "atherosclero": ["atherosclerosis", "atherosclerotic"],
    "inflam": ["inflammation", "inflammatory", "inflamed"],
    "prominen": ["prominent", "prominence", "prominently"],
    "defib": ["defibrillator", "defibrillators"],
    "reticula": ["reticular", "reticulation", "reticulations"],
    "arthroplast": ["arthroplasty", "arthroplasties"],
    "nodul": ["nodule", "nodules", "nodular", "nodularity"],
    "scar": ["scar", "scars", "scarring", "scarred"],
    "granuloma": ["granuloma", "granulomas", "granulomata", "granulomatous"],
    "emphysema": ["emphysema", "emphysematous"],
    "edema": ["edema", "edematous"],
}
# A few unmentions added to CheXpert's: words the token matcher would otherwise read as a mention.
# "The heart and lungs have [cleared] in the interval" is IU boilerplate, not a heart finding.
EXTRA_UNMENTIONS = {
    "support_devices": ["plate-like", "plate like"],
    "lung_lesion": ["masslike"],
    "cardiomegaly": ["the heart and lungs have"],
}

# ConText rules: (literal, category, direction, max_scope). Categories map to span attributes below.
NEG, UNC, UNC_PRE, HYPO = "NEGATED_EXISTENCE", "POSSIBLE_EXISTENCE", "PRE_UNCERTAIN", "HYPOTHETICAL"
_NEGATION_FORWARD = [
    "no", "without", "negative for", "free of", "clear of", "no evidence of", "no evidence for",
    "no signs of", "no sign of", "absence of", "resolution of", "removal of", "resolved", "neither", "nor",
    "never", "no longer", "disappearance of", "clearing of", "interval removal of", "not",
]
_NEGATION_BACKWARD = [
    "absent", "resolved", "has resolved", "have resolved", "removed", "has been removed", "is negative",
    "not seen", "not identified", "not present", "not visualized", "not evident", "not appreciated",
    "not demonstrated", "not detected", "none",
]
# "Normal" statements deny what they describe; short scope, stopped by a comma.
_NORMAL = ["normal", "unremarkable", "within normal limits", "within the normal limits", "within normal range",
           "normal limits", "within limits of normal", "not enlarged", "normal in size", "normal size"]
_PRE_UNCERTAIN = [
    "cannot exclude", "can not exclude", "cannot be excluded", "can not be excluded", "not excluded",
    "not be excluded", "cannot rule out", "can not rule out", "cannot be ruled out", "not ruled out",
    "not be ruled out", "no new", "no definite", "not definite", "no definitive", "no obvious",
    "no evidence to rule out", "difficult to exclude", "not entirely excluded", "no convincing",
]
_PRE_UNCERTAIN_BACKWARD = ["not excluded", "cannot be excluded", "can not be excluded", "not be excluded",
                           "cannot be ruled out", "not ruled out", "not be ruled out", "not entirely excluded"]
_UNCERTAIN_FORWARD = [
    "possible", "possibly", "probable", "probably", "likely", "may", "might", "could", "can be",
    "questionable", "questionably", "question of", "suspicious for", "suspected", "suspect", "suspicion of",
    "suggest", "suggests", "suggestive of", "suggesting", "concerning for", "concern for", "worrisome for",
    "indeterminate", "equivocal", "versus", "vs", "differential", "consider", "considered",
    "borderline", "top normal", "top-normal", "upper limits of normal", "upper limit of normal",
    "upper normal", "presumed", "presumably", "favor", "favored", "uncertain", "unclear", "apparent",
    "compatible with", "rule out", "r/o", "evaluate for", "to evaluate", "may represent", "could represent",
]
_UNCERTAIN_BACKWARD = ["versus", "vs", "suspected", "questioned",
                       "is possible", "are possible", "borderline", "top normal", "upper limits of normal",
                       "likely", "could be", "may be", "possibly"]
# Phrases that look like negation but are not ("no change in cardiomegaly" keeps cardiomegaly).
_PSEUDO = ["no change", "no interval change", "no significant change", "no significant interval change",
           "not changed", "not significantly changed", "unchanged", "no increase", "not increased",
           "not significantly", "no further", "no other", "not only", "gram negative"]
_TERMINATE = ["but", "however", "although", "though", "which", "with", "except", "aside from", "apart from",
              "otherwise", ";", "there is", "there are", "and there", "while", "whereas", "due to",
              "secondary to", "likely due to", "consistent with"]


def _rules(nlp) -> list:
    """ConText rules. medspaCy keys rules by literal, so repeats get a padded literal and a token pattern."""
    from medspacy.context import ConTextRule

    rules, seen = [], set()

    def add(lit, category, direction, max_scope=None, terminated_by=None):
        key = lit
        while key in seen:
            key += " "
        seen.add(key)
        pattern = [{"LOWER": t.lower_} for t in nlp.make_doc(lit)] if key != lit else None
        rules.append(ConTextRule(key, category, pattern=pattern, direction=direction, max_scope=max_scope,
                                 terminated_by=terminated_by))

    for lit in _NEGATION_FORWARD:
        add(lit, NEG, "BIDIRECTIONAL" if lit == "not" else "FORWARD", 6 if lit == "not" else None)
    for lit in _NEGATION_BACKWARD:
        add(lit, NEG, "BACKWARD", 8)
    for lit in _NORMAL:
        add(lit, NEG, "BIDIRECTIONAL", 8, {"COMMA"})
    for lit in _PRE_UNCERTAIN:
        add(lit, UNC_PRE, "FORWARD")
    for lit in _PRE_UNCERTAIN_BACKWARD:
        add(lit, UNC_PRE, "BACKWARD", 10)
    for lit in _UNCERTAIN_FORWARD:
        add(lit, UNC, "FORWARD")
    for lit in _UNCERTAIN_BACKWARD:
        add(lit, UNC, "BACKWARD", 8)
    for lit in ("if", "should there be", "in case of"):
        add(lit, HYPO, "FORWARD")
    for lit in _PSEUDO:
        add(lit, "PSEUDO", "PSEUDO")
    for lit in _TERMINATE:
        add(lit, "TERMINATE", "TERMINATE")
    add(",", "COMMA", "PSEUDO")
    return rules


def _variants(word: str) -> set[str]:
    """The whole-token forms a phrase's last word may take: inflections, or the stem's completions."""
    if word in STEM_COMPLETIONS:
        return set(STEM_COMPLETIONS[word])
    out = {word, word + "s", word + "es"}
    if word.endswith("e"):
        out |= {word + "d", word[:-1] + "ing"}
    else:
        out |= {word + "ed", word + "ing"}
    if word.endswith("y"):
        out.add(word[:-1] + "ies")
    if word.endswith("is"):
        out.add(word[:-2] + "es")
    return out


def _expand(phrase: str) -> list[str]:
    """CheXpert phrase -> token phrases. A trailing `_` keeps the last word exact (`drain_`)."""
    exact_end = phrase.endswith("_")
    words = phrase.replace("_", " ").split()
    if not words:
        return []
    if exact_end:
        return [" ".join(words)]
    head = " ".join(words[:-1])
    return sorted((head + " " + v).strip() for v in _variants(words[-1]))


def load_phrases(phrase_dir: Path = PHRASE_DIR) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Read mention / unmention files -> ({observation: phrases}, {observation: unmention phrases})."""
    mentions: dict[str, list[str]] = {}
    for path in sorted((phrase_dir / "mention").glob("*.txt")):
        phrases = [p.strip() for p in path.read_text().splitlines() if p.strip()]
        if path.stem == "no_finding":
            for p in phrases:
                name = EXTRA_NAMES.get(p, p.replace("_", " ").strip().replace(" ", "_").replace("-", "_"))
                mentions.setdefault(name, []).append(p)
        else:
            mentions.setdefault(path.stem, []).extend(phrases)
    unmentions: dict[str, list[str]] = {k: list(v) for k, v in EXTRA_UNMENTIONS.items()}
    for path in sorted((phrase_dir / "unmention").glob("*.txt")):
        unmentions.setdefault(path.stem, []).extend(p.strip() for p in path.read_text().splitlines() if p.strip())
    return mentions, unmentions


def _register_extensions() -> None:
    for name in ("mp_neg", "mp_unc", "mp_unc_pre"):
        if not Span.has_extension(name):
            Span.set_extension(name, default=False)


class IndependentLabeler:
    """label(text) -> {observation: "positive" | "negative" | "uncertain"}; unmentioned keys are absent."""

    GROUP = "mp_mentions"

    def __init__(self, phrase_dir: Path = PHRASE_DIR):
        import medspacy  # noqa: F401  (registers the medspacy_context factory)

        _register_extensions()
        self.nlp = spacy.blank("en")
        self.nlp.add_pipe("sentencizer")
        self.mentions, self.unmentions = load_phrases(phrase_dir)
        self.observations = tuple(sorted(self.mentions))
        self.matcher = PhraseMatcher(self.nlp.vocab, attr="LOWER")
        for obs, phrases in self.mentions.items():
            self._add(f"M|{obs}", phrases)
        for obs, phrases in self.unmentions.items():
            self._add(f"U|{obs}", phrases)
        attrs = {NEG: {"mp_neg": True}, UNC: {"mp_unc": True}, HYPO: {"mp_unc": True},
                 UNC_PRE: {"mp_unc_pre": True}}
        self.context = self.nlp.add_pipe(
            "medspacy_context",
            config={"rules": None, "input_span_type": "group", "span_group_name": self.GROUP,
                    "span_attrs": attrs},
        )
        self.context.add(_rules(self.nlp))
        self._pre = [(n, p) for n, p in self.nlp.pipeline if n != "medspacy_context"]

    def _add(self, key: str, phrases: Iterable[str]) -> None:
        forms = sorted({f for p in phrases for f in _expand(p)})
        self.matcher.add(key, [self.nlp.make_doc(f) for f in forms])

    def mention_spans(self, doc: Doc) -> list[Span]:
        """Mentions minus those overlapping an unmention of the same observation."""
        strings = self.nlp.vocab.strings
        found, blocked = [], {}
        for match_id, start, end in self.matcher(doc):
            kind, obs = strings[match_id].split("|", 1)
            if kind == "U":
                blocked.setdefault(obs, []).append((start, end))
            else:
                found.append((obs, start, end))
        spans = []
        for obs, start, end in found:
            if any(s < end and start < e for s, e in blocked.get(obs, ())):
                continue
            spans.append(Span(doc, start, end, label=obs))
        return spans

    def _doc(self, doc: Doc) -> Doc:
        for _, proc in self._pre:
            doc = proc(doc)
        doc.spans[self.GROUP] = self.mention_spans(doc)
        return self.context(doc)

    def mention_labels(self, text: str) -> list[tuple[str, str, str]]:
        """[(observation, mention text, label)] for every mention: what `label` aggregates (for debugging)."""
        doc = self._doc(self.nlp.make_doc(text or ""))
        return [(s.label_, s.text, _mention_label(s)) for s in doc.spans[self.GROUP]]

    def label(self, text: str) -> dict[str, str]:
        """Report-level labels: positive beats uncertain beats negative across mentions and sentences."""
        doc = self._doc(self.nlp.make_doc(text or ""))
        return _aggregate(doc.spans[self.GROUP])

    def label_many(self, texts: Iterable[str]) -> list[dict[str, str]]:
        return [self.label(t) for t in texts]


_RANK = {"negative": 0, "uncertain": 1, "positive": 2}


def _mention_label(span: Span) -> str:
    if span._.mp_unc_pre:
        return "uncertain"
    if span._.mp_neg:
        return "negative"
    if span._.mp_unc:
        return "uncertain"
    return "positive"


def _aggregate(spans: Iterable[Span]) -> dict[str, str]:
    out: dict[str, str] = {}
    for span in spans:
        lab = _mention_label(span)
        prev = out.get(span.label_)
        if prev is None or _RANK[lab] > _RANK[prev]:
            out[span.label_] = lab
    return out


@lru_cache(maxsize=1)
def default_labeler() -> IndependentLabeler:
    """One shared labeler per process (building it takes ~0.5 s)."""
    return IndependentLabeler()
