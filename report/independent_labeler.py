"""An independent CheXpert-style labeler for report text, used to check preference pairs.

Why it exists: the pair builder verifies its own edits with the project's extractor
(`clinical.extract`, `clinical.findings`). A checker that shares that code would share its blind spots,
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
# Words the CheXpert lists lack for observations that MeSH annotators mark often (checked on OpenI).
EXTRA_MENTIONS = {
    "degenerative": ["spondylosis", "spondylotic", "osteophyte", "arthritis", "arthritic", "enthesophyte"],
    "scoliosis": ["scoliotic", "dextroscoliosis", "levoscoliosis", "dextrocurvature", "levocurvature",
                  "curvature of the spine", "spine curvature"],
    "hyperinflation": ["hyperexpanded", "hyperaerated", "overinflated", "overinflation", "hyperexpansion"],
    "elevation": ["elevated"],
    "copd": ["chronic obstructive", "obstructive lung disease", "obstructive pulmonary disease"],
    "osteopenia": ["osteoporosis", "osteoporotic", "osteopenic", "demineralization", "demineralized"],
    "support_devices": ["stent", "wire_", "wires_", "clip", "leads_"],
}
# CheXpert names anatomy ("the heart", "contour", "mediastinum") as mentions and relies on negation to
# clear "heart size is normal". A bare "the mediastinum is stable" would then be positive; so a positive
# mention by one of these phrases counts only when its sentence also has an abnormality word.
ANATOMY_MENTIONS = {
    "cardiomegaly": {"the heart", "heart size", "cardiac size", "cardiac shadow", "cardiac contour",
                     "cardiac silhouette"},
    "enlarged_cardiomediastinum": {"_mediastinum", "cardiomediastinum", "contour", "mediastinal configuration",
                                   "mediastinal silhouette", "pericardial silhouette",
                                   "cardiac silhouette and vascularity"},
}
ABNORMAL_CUES = ("enlarg", "widen", "promin", "increas", "large", "abnormal", "dilat", "bulg", "globular",
                 "cardiomegaly", "accentuat", "exaggerat", "mass", "shift", "hypertroph")
# A few unmentions added to CheXpert's: words the token matcher would otherwise read as a mention.
# ("The heart and lungs have [cleared] in the interval" is IU boilerplate, not a heart finding.)
EXTRA_UNMENTIONS = {
    "support_devices": ["plate-like", "plate like"],
    "lung_lesion": ["masslike"],
    "cardiomegaly": ["the heart and lungs have"],
}

# ConText categories; each maps to a span attribute (see IndependentLabeler.__init__).
NEG, UNC, UNC_PRE = "NEGATED_EXISTENCE", "POSSIBLE_EXISTENCE", "PRE_UNCERTAIN"
ANATOMY = "anatomy"
# Cue lists. Each literal appears once: medspaCy prunes overlapping modifiers, so a literal listed twice
# (say forward and backward) would silently keep only one of the two.
_NEGATION = {
    "FORWARD": ["no", "without", "negative for", "free of", "clear of", "no evidence of", "no evidence for",
                "no signs of", "no sign of", "absence of", "resolution of", "removal of", "neither", "nor",
                "never", "no longer", "disappearance of", "clearing of", "interval removal of", "no other",
                "no further"],
    "BACKWARD": ["absent", "has resolved", "have resolved", "removed", "has been removed", "is negative",
                 "not seen", "not identified", "not present", "not visualized", "not evident", "not appreciated",
                 "not demonstrated", "not detected", "none", "negative"],
    "BIDIRECTIONAL": ["resolved"],
}
# "Normal" statements deny what they describe: backward across a list ("heart size, mediastinal contour and
# vascularity are normal"), forward only to the next comma ("normal heart size, mild congestion").
_NORMAL = ["normal", "unremarkable", "within normal limits", "within the normal limits", "within normal range",
           "normal limits", "within limits of normal", "not enlarged", "normal in size", "normal size"]
_PRE_UNCERTAIN = {
    "FORWARD": ["cannot exclude", "can not exclude", "cannot rule out", "can not rule out", "no new",
                "no definite", "not definite", "no definitive", "no obvious", "no evidence to rule out",
                "difficult to exclude", "difficult to completely exclude", "difficult to entirely exclude",
                "no convincing"],
    "BIDIRECTIONAL": ["not excluded", "not be excluded", "cannot be excluded", "can not be excluded",
                      "cannot be ruled out", "not ruled out", "not be ruled out", "not entirely excluded"],
}
_UNCERTAIN = {
    "FORWARD": ["possible", "probable", "may", "might", "could", "can be", "questionable", "questionably",
                "question of", "suspicious for", "suspect", "suspicion of", "suggest", "suggests",
                "suggestive of", "suggesting", "concerning for", "concern for", "worrisome for", "indeterminate",
                "equivocal", "differential", "consider", "considered", "presumed", "presumably", "favor",
                "favored", "uncertain", "unclear", "compatible with", "rule out", "r/o",
                "evaluate for", "to evaluate", "may represent", "could represent", "if", "should there be",
                "in case of"],
    "BACKWARD": ["questioned", "is possible", "are possible", "could be", "may be"],
    "BIDIRECTIONAL": ["versus", "vs", "top normal", "top-normal", "upper limits of normal",
                      "upper limit of normal", "upper normal", "likely", "probably", "possibly", "suspected"],
}
# Phrases that look like negation but are not ("no change in cardiomegaly" keeps cardiomegaly).
_PSEUDO = ["no change", "no interval change", "no significant change", "no significant interval change",
           "not changed", "not significantly changed", "unchanged", "no increase", "not increased",
           "not only", "gram negative", "without change", "without interval change", "without significant change",
           "without significant interval change"]
_TERMINATE = ["but", "however", "although", "though", "which", "with", "except", "aside from", "apart from",
              "otherwise", ";", "there is", "there are", "and there", "while", "whereas", "due to",
              "secondary to", "likely due to", "consistent with"]


def _normal_modifies(target: Span, modifier: Span, between: Span) -> bool:
    if target.start < modifier.start:
        return True
    return len(between) <= 5 and not any(t.text in {",", ";"} for t in between)


def _rules() -> list:
    """ConText rules built from the cue lists above ("not" reaches 6 tokens either way)."""
    from medspacy.context import ConTextRule

    # "not" as a token pattern also keeps medspaCy's token matcher non-empty (else spaCy warns W036 per doc)
    rules = [ConTextRule("not", NEG, pattern=[{"LOWER": "not"}], direction="BIDIRECTIONAL", max_scope=6)]
    for cues, category in ((_NEGATION, NEG), (_PRE_UNCERTAIN, UNC_PRE), (_UNCERTAIN, UNC)):
        for direction, literals in cues.items():
            # backward cues reach 8 tokens; two-way hedges ("atelectasis versus scarring") only 4
            scope = {"BACKWARD": 8, "BIDIRECTIONAL": 4 if category == UNC else None}.get(direction)
            rules += [ConTextRule(lit, category, direction=direction, max_scope=scope) for lit in literals]
    rules += [ConTextRule(lit, NEG, direction="BIDIRECTIONAL", max_scope=12, on_modifies=_normal_modifies)
              for lit in _NORMAL]
    rules += [ConTextRule(lit, "PSEUDO", direction="PSEUDO") for lit in _PSEUDO]
    rules += [ConTextRule(lit, "TERMINATE", direction="TERMINATE") for lit in _TERMINATE]
    literals = [r.literal for r in rules]
    assert len(literals) == len(set(literals)), "a cue literal is listed twice"
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
    for obs, phrases in EXTRA_MENTIONS.items():
        mentions.setdefault(obs, []).extend(phrases)
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
            anatomy = ANATOMY_MENTIONS.get(obs, set())
            self._add(f"M|{obs}", [p for p in phrases if p not in anatomy])
            self._add(f"A|{obs}", [p for p in phrases if p in anatomy])
        for obs, phrases in self.unmentions.items():
            self._add(f"U|{obs}", phrases)
        attrs = {NEG: {"mp_neg": True}, UNC: {"mp_unc": True}, UNC_PRE: {"mp_unc_pre": True}}
        self.context = self.nlp.add_pipe(
            "medspacy_context",
            config={"rules": None, "input_span_type": "group", "span_group_name": self.GROUP,
                    "span_attrs": attrs},
        )
        self.context.add(_rules())
        self._pre = [(n, p) for n, p in self.nlp.pipeline if n != "medspacy_context"]

    def _add(self, key: str, phrases: Iterable[str]) -> None:
        forms = sorted({f for p in phrases for f in _expand(p)})
        if forms:
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
                found.append((obs, start, end, kind == "A"))
        spans = []
        for obs, start, end, anatomy in found:
            if any(s < end and start < e for s, e in blocked.get(obs, ())):
                continue
            # kb_id marks anatomy mentions: Span._ values are keyed by offsets, not label, so they could clash
            spans.append(Span(doc, start, end, label=obs, kb_id=ANATOMY if anatomy else ""))
        return spans

    def _doc(self, doc: Doc) -> Doc:
        for _, proc in self._pre:
            doc = proc(doc)
        doc.spans[self.GROUP] = self.mention_spans(doc)
        return self.context(doc)

    def mention_labels(self, text: str) -> list[tuple[str, str, str]]:
        """[(observation, mention text, label)] for every mention: what `label` aggregates (for debugging)."""
        doc = self._doc(self.nlp.make_doc(text or ""))
        return [(s.label_, s.text, lab) for s in doc.spans[self.GROUP] if (lab := _mention_label(s))]

    def label(self, text: str) -> dict[str, str]:
        """Report-level labels: positive beats uncertain beats negative across mentions and sentences."""
        doc = self._doc(self.nlp.make_doc(text or ""))
        return _aggregate(doc.spans[self.GROUP])

    def label_many(self, texts: Iterable[str]) -> list[dict[str, str]]:
        return [self.label(t) for t in texts]


_RANK = {"negative": 0, "uncertain": 1, "positive": 2}


def _mention_label(span: Span) -> str | None:
    """CheXpert order: pre-negation uncertainty, negation, uncertainty, else positive (None: not a mention)."""
    if span._.mp_unc_pre:
        return "uncertain"
    if span._.mp_neg:
        return "negative"
    if span._.mp_unc:
        return "uncertain"
    if span.kb_id_ == ANATOMY and not _has_abnormal_cue(span.sent):
        return None
    return "positive"


def _has_abnormal_cue(sent: Span) -> bool:
    return any(t.lower_.startswith(ABNORMAL_CUES) for t in sent)


def _aggregate(spans: Iterable[Span]) -> dict[str, str]:
    out: dict[str, str] = {}
    for span in spans:
        lab = _mention_label(span)
        if lab is None:
            continue
        prev = out.get(span.label_)
        if prev is None or _RANK[lab] > _RANK[prev]:
            out[span.label_] = lab
    return out


@lru_cache(maxsize=1)
def default_labeler() -> IndependentLabeler:
    """One shared labeler per process (building takes ~0.3 s once medspaCy is imported; the import ~2-5 s)."""
    return IndependentLabeler()
