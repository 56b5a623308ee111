"""The offline default extractor: lexicon + negation/uncertainty rules, RadGraph-schema output.

It needs no model weights, runs thousands of reports per second on one core, and gives every
entity exact character offsets, so the editors can change a span and re-extract to verify.
Relations follow RadGraph: a finding is `located_at` its anatomy, laterality and zone words; a
severity word `modify`s its finding; a normal word ("clear", "within normal limits") is an
Observation `located_at` the anatomy it describes.
"""

from __future__ import annotations

from collections.abc import Sequence

from clinical.extract.context import TERMINATORS, certainty_of, find_cues
from clinical.extract.lexicon import Lexicon, Match, load_lexicon
from clinical.extract.tokens import Token, tokenize
from schemas.extraction import Entity, Extraction, Relation

_SENT_END = {".", "?", "!"}
_CLAUSE_END = {";"}
_PREPS = {"in", "at", "of", "within", "over", "involving", "along", "overlying", "projecting", "near",
          "the", "both", "a", "an", "to", "from", "and", "xxxx", "lung", "lungs", "lobe", "zone", "zones",
          "field", "fields", "hemithorax", "mid", "aspect", "region", "side", "sided", "-", "projected"}
_MODIFIER_SKIP = {"the", "a", "an", "and", "xxxx", "-", ",", "focal", "patchy", "streaky", "scattered", "new",
                  "acute", "chronic", "old", "linear", "calcified", "of", "is", "are", "there", "some"}
_GENERIC_ABNORMAL = {"abnormality", "abnormalities", "disease", "process", "findings", "finding", "abnormal"}
_COPULAS = {"is", "are", "appear", "appears", "remain", "remains", "seem", "seems", "was", "were", "be"}


def split_clauses(tokens: Sequence[Token], text: str) -> list[tuple[int, int, int]]:
    """(sentence_index, start_tok, end_tok) for each clause, punctuation included in the clause."""
    out: list[tuple[int, int, int]] = []
    sent, start = 0, 0
    n = len(tokens)
    for i, t in enumerate(tokens):
        lw = t.lower
        nxt = tokens[i + 1] if i + 1 < n else None
        if lw in _SENT_END or (nxt is not None and "\n" in text[t.end : nxt.start]):
            if lw == "." and nxt is not None and t.start > 0 and text[t.start - 1].isdigit() \
                    and nxt.text[:1].isdigit() and nxt.start == t.end:
                continue  # decimal point
            out.append((sent, start, i + 1))
            sent, start = sent + 1, i + 1
        elif lw in _CLAUSE_END:
            out.append((sent, start, i + 1))
            start = i + 1
        elif lw in TERMINATORS and i > start:
            out.append((sent, start, i))
            start = i
        elif lw == "," and nxt is not None and nxt.lower in {"there", "which", "but", "however", "so", "therefore",
                                                              "thus", "hence"} and i > start:
            out.append((sent, start, i + 1))
            start = i + 1
    if start < n:
        out.append((sent, start, n))
    return out


class RuleExtractor:
    """Rule-based RadGraph-schema extractor (registered as ``rules``)."""

    name = "rules"

    def __init__(self, lexicon: Lexicon | str | None = None, abbreviations: bool = True):
        self.lexicon = lexicon if isinstance(lexicon, Lexicon) else load_lexicon(lexicon)
        self.abbreviations = abbreviations

    def extract(self, text: str) -> Extraction:
        tokens = tokenize(text)
        matches = self.lexicon.match(tokens)
        if self.abbreviations and "(" in text:
            matches = self._add_abbreviations(text, tokens, matches)
        entities: list[Entity] = []
        relations: list[Relation] = []
        by_clause: dict[int, list[tuple[Match, int]]] = {}
        clauses = split_clauses(tokens, text)
        clause_of = [0] * len(tokens)
        for ci, (_, s, e) in enumerate(clauses):
            for k in range(s, e):
                clause_of[k] = ci
        for m in matches:
            by_clause.setdefault(clause_of[m.start_tok], []).append((m, 0))
        next_id = 0
        for ci, (_sent, lo, hi) in enumerate(clauses):
            # "lungs are free of focal airspace disease": "free" denies what follows, it says nothing of the lungs
            cms = [m for m, _ in by_clause.get(ci, []) if tokens[m.start_tok].lower != "free" or not _free_of(tokens, m)]
            if not cms and not any(tokens[k].lower in _GENERIC_ABNORMAL for k in range(lo, hi)):
                continue
            cues = find_cues(tokens, lo, hi)
            target_starts = sorted(m.start_tok for m in cms if _is_target(m))
            has_after = {s: any(ts >= e for ts in target_starts) for _, s, e in cues}
            ids: dict[int, list[tuple[str, Match, str]]] = {}  # match start -> [(id, match, category)]
            for m in cms:
                start, end = tokens[m.start_tok].start, tokens[m.end_tok - 1].end
                for lab in m.labels:
                    next_id += 1
                    eid = str(next_id)
                    if lab.category in ("finding", "device"):
                        cert = certainty_of(m.start_tok, m.end_tok, cues, has_after)
                        cert = self._normal_after(tokens, cms, m, hi, cert)
                        kind = "Observation"
                    elif lab.category in ("severity", "comparison", "normal", "abnormal"):
                        cert = certainty_of(m.start_tok, m.end_tok, cues, has_after) \
                            if lab.category in ("normal", "abnormal") else "present"
                        kind = "Observation"
                    else:
                        cert, kind = "present", "Anatomy"
                    entities.append(Entity(eid, text[start:end], start, end, kind, cert, lab.concept, lab.category))
                    ids.setdefault(m.start_tok, []).append((eid, m, lab.category))
            # generic "no acute bony abnormality": an absent Observation located at the clause's anatomy
            anat_ids = [eid for lst in ids.values() for eid, _, c in lst if c == "anatomy"]
            generic = [k for k in range(lo, hi) if tokens[k].lower in _GENERIC_ABNORMAL] if anat_ids else []
            if generic:
                # "disease" inside "airspace disease" is that finding's word, not a generic one of the lungs
                in_finding = {k for m in cms if any(lab.category in ("finding", "device") for lab in m.labels)
                              for k in range(m.start_tok, m.end_tok)}
                generic = [k for k in generic if k not in in_finding]
            for k in generic:
                if certainty_of(k, k + 1, cues, has_after) == "absent":
                    next_id += 1
                    t = tokens[k]
                    entities.append(Entity(str(next_id), t.text, t.start, t.end, "Observation", "absent",
                                           "abnormality", "abnormality"))
                    relations.extend(Relation("located_at", str(next_id), a) for a in anat_ids)
            relations.extend(self._relate(tokens, cms, ids, lo, hi))
        return Extraction(text=text, entities=entities, relations=relations)

    def _normal_after(self, tokens: Sequence[Token], cms: list[Match], m: Match, hi: int, cert: str) -> str:
        """ "vascular engorgement appears within normal limits": a normal word after a copula that
        follows the finding, with no anatomy in between, denies it."""
        if cert != "present":
            return cert
        saw_copula = False
        for other in cms:
            if other.start_tok < m.end_tok:
                continue
            cats = {lab.category for lab in other.labels}
            if cats & {"anatomy", "finding", "device"}:
                return cert
            if "normal" in cats:
                gap = {tokens[k].lower for k in range(m.end_tok, other.start_tok)}
                saw_copula = bool(gap & _COPULAS)
                return "absent" if saw_copula else cert
        return cert

    def _relate(self, tokens, cms, ids, lo, hi) -> list[Relation]:
        rels: list[Relation] = []
        order = sorted(cms, key=lambda m: m.start_tok)
        for idx, m in enumerate(order):
            for eid, _, cat in ids[m.start_tok]:
                if cat in ("finding", "device", "abnormal"):
                    # modifiers directly before: severity, laterality, zone, anatomy
                    j = idx - 1
                    while j >= 0:
                        prev = order[j]
                        gap = [tokens[k].lower for k in range(prev.end_tok, order[j + 1].start_tok)]
                        if any(g not in _MODIFIER_SKIP for g in gap):
                            break
                        pcats = {lab.category for lab in prev.labels}
                        if not pcats & {"severity", "laterality", "zone", "anatomy"}:
                            break
                        for pid, _, pcat in ids[prev.start_tok]:
                            rels.append(Relation("modify" if pcat == "severity" else "located_at",
                                                 pid if pcat == "severity" else eid,
                                                 eid if pcat == "severity" else pid))
                        j -= 1
                    # prepositional location after: "in the left lower lobe"
                    j = idx + 1
                    while j < len(order):
                        nxt = order[j]
                        gap = [tokens[k].lower for k in range(order[j - 1].end_tok, nxt.start_tok)]
                        if any(g not in _PREPS for g in gap) or not gap and j > idx + 1 and False:
                            break
                        ncats = {lab.category for lab in nxt.labels}
                        if not ncats & {"laterality", "zone", "anatomy"}:
                            break
                        for nid, _, _ in ids[nxt.start_tok]:
                            rels.append(Relation("located_at", eid, nid))
                        j += 1
                if cat in ("normal", "abnormal"):
                    for other in order:
                        for oid, _, ocat in ids[other.start_tok]:
                            if ocat == "anatomy":
                                rels.append(Relation("located_at", eid, oid))
        return rels

    def _add_abbreviations(self, text: str, tokens: Sequence[Token], matches: list[Match]) -> list[Match]:
        """Short forms defined in the text ("chronic obstructive pulmonary disease (COPD)") take the
        concept of their long form, via scispacy's AbbreviationDetector."""
        from clinical.extract.abbreviations import abbreviation_spans

        taken = {k for m in matches for k in range(m.start_tok, m.end_tok)}
        extra: list[Match] = []
        for (ls, le), short_spans in abbreviation_spans(text):
            long_tokens = [i for i, t in enumerate(tokens) if t.start >= ls and t.end <= le]
            labels = tuple(lab for m in matches if m.start_tok in long_tokens for lab in m.labels
                           if lab.category in ("finding", "device"))
            if not labels:
                continue
            for ss, se in short_spans:
                idx = [i for i, t in enumerate(tokens) if t.start >= ss and t.end <= se]
                if idx and not taken & set(idx):
                    extra.append(Match(idx[0], idx[-1] + 1, labels[:1]))
        return sorted(matches + extra, key=lambda m: m.start_tok)


def _is_target(m: Match) -> bool:
    return any(lab.category in ("finding", "device", "normal", "abnormal") for lab in m.labels)


def _free_of(tokens: Sequence[Token], m: Match) -> bool:
    """The normal word "free" opening "free of X": a negation cue of X, not a normal statement."""
    return (m.end_tok - m.start_tok == 1 and tokens[m.start_tok].lower == "free" and m.end_tok < len(tokens)
            and tokens[m.end_tok].lower == "of" and all(lab.category == "normal" for lab in m.labels))
