"""Insertion editor: a missed finding goes in as the reference's own sentence, in the response's style.

Why whole sentences: a fragment cut out of the reference loses its size, side or hedge ("mm
nodular density", "possible cm opacity"); the radiologist's sentence keeps them, and asserts
only what the reference asserts. Sentences that are not findings (recommendations, technique,
history, disclaimers such as "CT is more sensitive in detecting small nodules", hypotheticals)
are never copied. The sentence takes the place of the response's statement that denied the
finding, or of a closing "no acute ..." line that it contradicts, else goes before the closing
impression line, else at the end.
"""

from __future__ import annotations

import re

from clinical.errors import ClinicalError
from clinical.extract.tokens import tokenize
from clinical.fluency import sentence_problems
from editors.apply import normalize
from editors.base import EditContext, SpanEdit, sentence_spans
from editors.deletion import remove_statement
from editors.style import sentence

MAX_WORDS = 28
_NOT_A_FINDING = re.compile(
    r"\b(recommend\w*|follow[- ]?up|followed|further (evaluation|characteri[sz]ation|assessment)|characteri[sz]ed|"
    r"correlat\w*|consider\w*|sensitive|ct (scan|examination)?|should|could|would|might|if\b|evaluat\w*|"
    r"assess\w*|comparison|compared|prior|previous|examination consists|frontal and lateral|lateral view|"
    r"views?\b|history|indication|technique|notif\w*|discussed|called|critical|limited|obscured?|"
    r"not well (seen|visualized)|difficult|cannot be (excluded|evaluated)|rotation|rotated|underpenetrat\w*|"
    r"projection|positioning|xxxx xxxx xxxx|this|these|those|unknown|age of|however|although|given|"
    r"uncertain significance|artifacts?)\b", re.IGNORECASE)
_SUMMARY = re.compile(r"^\s*(\d+\s*[.)]\s*)?(impression\s*:?\s*)?(no (acute|active|evidence of acute|"
                      r"radiographic evidence of acute|evidence of active)|normal chest|negative (chest|exam|for acute))",
                      re.IGNORECASE)
_REF_NO_ACUTE = re.compile(r"\bno (evidence of )?(acute|active)\b|\bnegative (chest|exam)|\bnormal chest",
                           re.IGNORECASE)
# a summary about the whole chest, not one organ ("no acute displaced rib fractures" is not a summary)
_GLOBAL = re.compile(r"cardiopulmonary|intrathoracic|cardiothoracic|chest|disease|process|abnormalit|findings?\b",
                     re.IGNORECASE)
_LOCAL = re.compile(r"fractur|bony|bone|osseous|rib|spine|skelet", re.IGNORECASE)
_ANY_SUMMARY = re.compile(r"\b(no|negative for) (evidence of )?acute (cardiopulmonary|intrathoracic|cardiothoracic|"
                          r"pulmonary|chest)", re.IGNORECASE)
# a finding described as chronic does not contradict "no acute ..."
_CHRONIC = re.compile(r"\b(chronic|old|healed|unchanged|stable|fibrosis|scarring|granulom\w*|calcified|remote|"
                      r"longstanding|redemonstrat\w*)\b", re.IGNORECASE)
# findings that make "no acute cardiopulmonary process" false
ACUTE = {"consolidation", "pneumonia", "edema", "pleural_effusion", "pneumothorax", "lung_opacity", "atelectasis",
         "fracture", "pneumoperitoneum", "enlarged_cardiomediastinum", "subcutaneous_emphysema"}


def reference_sentences(reference: str) -> list[tuple[int, int]]:
    """Character spans of the reference's sentences."""
    return sentence_spans(reference)


def finding_sentence(reference: str, start: int, ref_concepts: set[str] | None = None) -> str | None:
    """The reference sentence holding the finding at `start`, when it is a plain statement of findings."""
    for s, e in reference_sentences(reference):
        if s <= start < e:
            text = reference[s:e].strip()
            text = re.sub(r"^\s*(\d+\s*[.)]|[-*•])\s*", "", text)
            text = re.sub(r"^(impression|findings|conclusion)\s*:\s*", "", text, flags=re.IGNORECASE)
            text = re.sub(r"^(and|also|but|in addition|additionally|again)\b,?\s*", "", text, flags=re.IGNORECASE)
            text = re.sub(r"\s+\d+\s*[.)]?\s*$", "", text.rstrip(" .;"))  # "... edema 2." (the next item's number)
            if re.search(r"(?<!\d)\.|\.(?!\d)", text):
                return None  # two sentences glued together ("spine.. No acute ..."): not one statement
            words = re.findall(r"[A-Za-z0-9]+", text)
            if not words or len(words) > MAX_WORDS or _NOT_A_FINDING.search(text):
                return None
            return text.rstrip(" .;")
    return None


_CLAUSE_CUT = re.compile(r",\s+|;\s*|\s+and\s+(?=there\b)|(?<!consistent)(?<!compatible)(?<!associated)(?<!along)"
                         r"(?<!together)\s+with\s+", re.IGNORECASE)
_NEG_WORD = re.compile(r"\b(no|not|without|negative|free of)\b", re.IGNORECASE)


# a clause opening on one of these reads the clause before it ("rib deformities, possibly old fractures"):
# alone it loses what it is about
_NOT_ALONE = {"which", "that", "but", "or", "as", "possibly", "probably", "likely", "perhaps", "consistent",
              "compatible", "suggestive", "suggesting", "representing", "may", "could", "due", "related",
              "secondary", "concerning", "favoring", "versus", "vs"}


def finding_clause(sentence_text: str, surface: str, concept: str, lexicon) -> str | None:
    """The clause of a long reference sentence that states the finding ("... silhouette is unchanged
    with mild cardiomegaly" -> "mild cardiomegaly"): fewer words change, the finding keeps its own
    modifiers. None when the sentence is one clause or the clause would not state the finding alone."""
    at = sentence_text.lower().find(surface.lower())
    if at < 0:
        return None
    pieces, pos = [], 0
    for m in _CLAUSE_CUT.finditer(sentence_text):
        pieces.append((pos, m.start()))
        pos = m.end()
    pieces.append((pos, len(sentence_text)))
    if len(pieces) < 2:
        return None
    k = next((i for i, (a, b) in enumerate(pieces) if a <= at < b), None)
    if k is None:
        return None
    lo, hi = pieces[k]
    while k > 0 and _modifier_only(sentence_text[pieces[k - 1][0]:pieces[k - 1][1]], lexicon):
        # "with mild bibasilar, right greater than left airspace disease": "mild bibasilar" belongs to it
        k -= 1
        lo = pieces[k][0]
    clause = sentence_text[lo:hi].strip()
    words = clause.split()
    if len(words) < 2 or _NEG_WORD.search(clause) or words[0].lower() in _NOT_ALONE:
        return None
    labels = {lab.concept for m in lexicon.match(tokenize(clause.lower())) for lab in m.labels}
    return clause if concept in labels else None


def _modifier_only(piece: str, lexicon) -> bool:
    """A short piece that names no finding and has no verb: words of the noun phrase that follows it."""
    words = piece.split()
    if not words or len(words) > 3 or re.search(r"\b(is|are|was|were|has|have|seen|noted|no|not)\b", piece, re.I):
        return False
    return not any(lab.category in ("finding", "device") for m in lexicon.match(tokenize(piece.lower()))
                   for lab in m.labels)


_COUNTABLE = ("mass", "nodule", "effusion", "pneumothorax", "hernia", "lesion", "opacity", "fracture")


def _label_of(reference: str, start: int) -> str:
    """The whole label holding `start` ("Pulmonary mass"), its sentence in the label list."""
    for s, e in reference_sentences(reference):
        if s <= start < e:
            return reference[s:e]
    return ""


def label_sentence(label: str) -> str | None:
    """A label of a label-list reference ("Pleural effusion") as a short statement ("there is a
    pleural effusion"): a bare label pasted into a report is not report text."""
    words = label.strip().rstrip(".").lower()
    if not words or not re.fullmatch(r"[a-z][a-z -]*", words):
        return None
    if words.endswith("s") and not words.endswith(("sis", "us", "ss", "ax")):
        return f"there are {words}"
    article = ("an " if words[0] in "aeiou" else "a ") if words.endswith(_COUNTABLE) else ""
    return f"there is {article}{words}"


def insertion_point(ctx: EditContext) -> tuple[int, bool]:
    """(char offset, before_summary). Before a final "no acute ..." sentence, else after the last one."""
    if len(ctx.sentences) >= 2:
        s, _e = ctx.sentences[-1]
        if _SUMMARY.match(ctx.text[s:]):
            return s, True
    return len(ctx.text.rstrip()), False


def insert_sentence(ctx: EditContext, fragment: str, error_type: str, name: str) -> SpanEdit:
    """One sentence in the response's style, before the closing impression line or at the end."""
    sent = sentence(fragment, ctx.style)
    pos, before = insertion_point(ctx)
    if before:
        return SpanEdit(pos, pos, sent + " ", error_type, name)
    if pos == 0:
        return SpanEdit(0, 0, sent, error_type, name)
    if ctx.text[:pos].rstrip()[-1:] not in ".!?":
        # the response stops mid-sentence ("... no pneumothor"): close it, or its negation would scope us
        sent = (" . " if ctx.style.spaced_punct else ". ") + sent
        return SpanEdit(pos, pos, sent, error_type, name)
    return SpanEdit(pos, pos, " " + sent, error_type, name)


def summary_contradicted(ctx: EditContext, concept: str, fragment: str = "") -> tuple[int, int] | None | bool:
    """The response's closing "no acute ..." sentence when the new finding makes it false; False when
    such a statement exists but is glued into another sentence ("bony thorax is unremarkable negative
    for acute cardiopulmonary abnormality"), so it cannot go alone."""
    certain = any(f.concept == concept and f.certainty == "present" for f in ctx.ref_findings.findings)
    if concept not in ACUTE or not certain or _REF_NO_ACUTE.search(ctx.reference) or _CHRONIC.search(fragment):
        return None  # a hedged or chronic finding does not make "no acute ..." false
    for s, e in reversed(ctx.sentences):
        text = ctx.text[s:e]
        if _SUMMARY.match(text) and _GLOBAL.search(text) and not _LOCAL.search(text) \
                and not any(s <= f.start < e and f.positive for f in ctx.findings.findings):
            return (s, e)
    if any(_ANY_SUMMARY.search(ctx.text[s:e]) for s, e in ctx.sentences):
        return False
    return None


class InsertFinding:
    name = "insertion"
    error_types = ("missed_finding",)

    def propose(self, error: ClinicalError, ctx: EditContext) -> list[SpanEdit] | None:
        refs = [r for r in error.ref_findings if r.positive]
        frags = []
        for r in refs:
            whole = label_sentence(_label_of(ctx.reference, r.start)) if ctx.label_only else \
                finding_sentence(ctx.reference, r.start)
            part = finding_clause(whole, r.text, error.concept, ctx.lexicon) if whole and not ctx.label_only else None
            for frag in (whole, part):
                if frag and not sentence_problems(sentence(frag, ctx.style)):  # the reference's own typos stay out
                    deid = len(re.findall(r"\bx{2,}\b", frag, re.IGNORECASE))
                    head = frag.split()[:3]
                    # "the appearance XXXX subsegmental atelectasis": a de-id token ate the verb or the subject
                    if deid <= 1 and not any(re.fullmatch(r"x{2,}", w, re.IGNORECASE) for w in head):
                        frags.append((r.certainty != "present", deid, len(frag.split()), frag))
        if not frags and error.concept not in ctx.covered:
            return None
        fragment = min(frags)[-1] if frags else ""
        edits: list[SpanEdit] = []
        for f in error.findings:  # the response denies it: the denial goes first
            ed = remove_statement(ctx, (f.start, f.end), error.error_type, self.name,
                                  cue=f.cue_span if f.category == "denial" else None)
            if ed is None:
                return None
            if ed not in edits:  # two denied words of one sentence ("no nodules or masses") remove it once
                edits.append(ed)
        summary = summary_contradicted(ctx, error.concept, fragment)
        if summary is False:
            return None  # a "no acute ..." the new finding contradicts sits inside another statement
        asserted = any(f.positive and f.concept in ctx.lexicon.compatible_with(error.concept)
                       for f in ctx.findings.findings)
        if error.concept in ctx.covered or (asserted and edits):
            # another inserted sentence, or the response itself, states it already: only the denial goes
            return normalize(edits) if edits else None
        # the new sentence takes the place of a removed sentence that denied it, or of the contradicted summary
        if summary is not None:
            edits.append(_replace_keeping_space(ctx, summary, fragment, error.error_type, self.name))
        else:
            for k, ed in enumerate(edits):
                sent = next(((s, e) for s, e in ctx.sentences if ed.start <= s and e <= ed.end), None)
                if sent is not None and not ed.replacement:
                    edits[k] = _replace_keeping_space(ctx, sent, fragment, error.error_type, self.name, ed)
                    break
            else:
                edits.append(insert_sentence(ctx, fragment, error.error_type, self.name))
        return normalize(edits)


def _replace_keeping_space(ctx: EditContext, sent: tuple[int, int], fragment: str, etype: str, name: str,
                           removal: SpanEdit | None = None) -> SpanEdit:
    """Replace the sentence `sent` (or the removal around it) by the new sentence, whitespace kept."""
    a, b = (removal.start, removal.end) if removal else sent
    old = ctx.text[a:b]
    lead = old[: len(old) - len(old.lstrip())]
    trail = old[len(old.rstrip()):]
    return SpanEdit(a, b, lead + sentence(fragment, ctx.style) + trail, etype, name)
