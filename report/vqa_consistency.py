"""An independent judge of VQA pairs: does a text state the gold in every place it answers?

Why independent: the editor (``editors/vqa``) decides where an answer is given and edits there; a
check that reused its reader would agree with its mistakes. This module imports nothing from it:
it has its own sentence and clause cutting (regular expressions), its own yes/no words, keywords
(crude stems of the question's content words), negations, antonyms, modalities and normal
statements. It is deliberately strict: a clause that shares a keyword with the question counts as
an answer place, and a text whose places disagree "contradicts itself".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENT = re.compile(r"[^.!?\n]+[.!?]*")
_CLAUSE_CUT = re.compile(r",(?!\s*(?:which|who|that)\b)|;|:|\bbut\b|\bwhile\b|\bhowever\b|\band (?=there|the|no|it|this)\b", re.I)
_LEAD = re.compile(r"^\W*(?:based on|according to|judging from|looking at)\b", re.I)
_NEG = re.compile(r"\b(?:no|not|without|absent|none|negative for|free of|cannot|never)\b|n't\b", re.I)
_YES = re.compile(r"\b(?:yes|affirmative)\b", re.I)
_NO_TOKEN = re.compile(r"\b(?:no|negative)\b(?=\s*(?:[,.;:!*\-()\"'\u2013\u2014]|$|\s+(?:there|it|this|they|i|the)\b))", re.I)
_WORD = re.compile(r"[a-z0-9]+")
_STOP = set("""is are was were be been the a an of in on at to this that these those there it its does do did
has have had any some image images picture scan film study shown seen see visible present evidence patient
what which where how can could would should will with and or for by from as than more less show shows
demonstrate demonstrated demonstrates noted appear appears appearing""".split())
_ANTONYM = {"normal": "abnormal", "abnormal": "normal", "symmetric": "asymmetric", "asymmetric": "symmetric",
            "symmetrical": "asymmetrical", "asymmetrical": "symmetrical", "regular": "irregular",
            "irregular": "regular", "homogeneous": "heterogeneous", "heterogeneous": "homogeneous",
            "present": "absent", "absent": "present", "male": "female", "female": "male", "benign": "malignant",
            "malignant": "benign", "solid": "cystic", "cystic": "solid", "increased": "decreased",
            "decreased": "increased", "larger": "smaller", "smaller": "larger", "hyperdense": "hypodense",
            "hypodense": "hyperdense", "hyperintense": "hypointense", "hypointense": "hyperintense",
            "sharp": "blunted", "blunted": "sharp", "midline": "deviated", "deviated": "midline"}
_MODALITIES = {"ct": "ct", "mri": "mri", "mr": "mri", "xray": "xray", "radiograph": "xray", "ultrasound": "us",
               "pet": "pet"}
_PLANES = {"axial", "coronal", "sagittal"}
_PARENCHYMA = ("tubercul", "tb", "nodul", "mass", "opacit", "consolidat", "pneumon", "infiltrat", "lesion",
               "calcifi", "atelecta", "edema", "oedema", "granulom", "emphysem", "fibros", "cavit")
_NORMAL_STMT = re.compile(r"\b(?:lungs?|lung fields?|chest|image|film|study|radiograph|x-?ray)\b[^,.;]*\b"
                          r"(?:clear|normal|unremarkable)\b|\b(?:no|without) (?:acute )?(?:abnormalit|finding|"
                          r"disease|patholog)|\b(?:normal|unremarkable) (?:chest|study|film|radiograph|x-?ray)\b", re.I)


def _stem(w: str) -> str:
    w = w.lower().replace("-", "")
    return w[:5] if len(w) > 5 else w.rstrip("s")


def _words(s: str) -> list[str]:
    s = s.lower().replace("x-ray", "xray").replace("x ray", "xray").replace("chest xray", "xray")
    return _WORD.findall(s.replace("chest radiograph", "xray"))


@dataclass(frozen=True)
class Verdict:
    places: tuple[tuple[str, str, str], ...]  # (kind, polarity, text)

    @property
    def polarities(self) -> set[str]:
        return {p for _, p, _ in self.places}

    @property
    def contradicts_itself(self) -> bool:
        return len(self.polarities) > 1

    def states(self, gold: str) -> bool:
        """Answers, and gives ``gold`` in every place it answers."""
        return bool(self.places) and self.polarities == {gold}


def _clauses(sent: str) -> list[str]:
    """The clauses of a sentence, without labels ("Pneumothorax:" in "Pneumothorax: Yes")."""
    out, pos = [], 0
    for m in _CLAUSE_CUT.finditer(sent):
        if m.group() != ":":
            out.append(sent[pos : m.start()])
        pos = m.end()
    return out + [sent[pos:]]


def judge_yes_no(text: str, question: str) -> Verdict:
    """Every yes/no word and every clause about the question in ``text``, with its polarity."""
    qwords = [w for w in _words(question) if w not in _STOP]
    keys = {_stem(w) for w in qwords}
    q_mods = {_MODALITIES[w] for w in _words(question) if w in _MODALITIES}
    q_planes = {w for w in _words(question) if w in _PLANES}
    asks_parenchyma = any(w.startswith(_PARENCHYMA) for w in qwords)
    question = re.sub(r"\byes\s*/\s*no\b", " ", question, flags=re.I)
    q_neg = len(_NEG.findall(question)) % 2
    asks_normal = any(w in ("normal", "abnormal", "clear", "unremarkable") for w in qwords)
    places: list[tuple[str, str, str]] = []
    for m in _YES.finditer(text):
        places.append(("token", "yes", m.group()))
    for m in _NO_TOKEN.finditer(text):
        places.append(("token", "no", m.group()))
    for sent in _SENT.findall(text):
        for clause in _clauses(sent):
            body = re.sub(r"^\W*(?:yes|no|affirmative|negative)\b(?=\s*(?:[,.;:!*\-)\"'\u2013\u2014]|$|\s+(?:there|it|this|they|i|the)\b))\W*", "",
                          clause.strip(), flags=re.I)
            body = re.sub(r"\b(?:the answer is|answer)\s*:?\s*(?:yes|no)\b", "", body, flags=re.I)
            ws = _words(body)
            if not ws or _LEAD.match(body):  # "Based on the chest X-ray": where the answer comes from
                continue
            if re.search(r"\bother\b", body, re.I) and _NEG.search(body):  # "No other abnormality is seen."
                continue
            stems = {_stem(w) for w in ws}
            negs = len(_NEG.findall(body))
            ants = sum(1 for w in ws if w in _ANTONYM and _ANTONYM[w] in qwords and w not in qwords)
            mods = {_MODALITIES[w] for w in ws if w in _MODALITIES}
            planes = {w for w in ws if w in _PLANES}
            other = bool((q_mods and mods and not mods & q_mods) or (q_planes and planes and not planes & q_planes))
            bare = set(ws) <= {"present", "absent", "seen", "visible", "not", "none", "identified"}
            if stems & keys or ants or other or bare:
                pol = "no" if (negs + ants + other + q_neg) % 2 else "yes"
                places.append(("clause", pol, body))
            elif asks_parenchyma and not asks_normal and _NORMAL_STMT.search(body):
                places.append(("clause", "yes" if _NEG.search(re.sub(r"\bno (?:acute )?abnormal\w*", "", body))
                               else "no", body))
    return Verdict(tuple(places))


_SYN = {"grey": "gray", "radiograph": "xray", "cxr": "xray", "posteroanterior": "pa", "anteroposterior": "ap", "r": "right",
        "l": "left", "mr": "mri", "transverse": "axial", "one": "1", "two": "2", "three": "3", "four": "4",
        "five": "5", "computed": "ct", "tomography": "", "magnetic": "mri", "resonance": "", "imaging": "",
        "plane": "", "side": "", "weighted": "", "the": "", "a": "", "an": "", "of": "", "on": "",
        "in": "", "at": "", "to": ""}


def open_norm(s: str) -> list[str]:
    """The judge's own normal form of an open answer: words, synonyms, no plural s, no articles."""
    out = []
    for w in _words(s):
        w = _SYN.get(w, w)
        if w.endswith("s") and len(w) > 3 and not w.endswith(("ss", "us", "is")):
            w = w[:-1]
        if w:
            out.append(w)
    return out


def gives_open(text: str, gold: str, wrong: str = "") -> bool:
    """``text`` names the gold (its words in order) and no longer names the wrong value's own words."""
    t, g = open_norm(text), open_norm(gold)
    if not g:
        return False
    items = [open_norm(p) for p in re.split(r",|;|\band\b", gold)] if re.search(r",|;|\band\b", gold) else [g]
    found = all(any(t[i : i + len(it)] == it for i in range(len(t) - len(it) + 1)) for it in items if it)
    extra = [w for w in open_norm(wrong) if w not in g]
    return found and not (extra and all(w in t for w in extra))


def fluent(text: str) -> bool:
    """No doubled words or spaces, an article agrees with the next word, sentences start upper-case
    when the text writes capitals, no dangling punctuation."""
    if re.search(r"\b(\w+) \1\b", text, re.I) or "  " in text or re.search(r"\s[,.;:]", text):
        return False
    if re.search(r"\ban [bcdfgjklmnpqrstvwz][a-z]", text) or re.search(r"\ba [aeio][a-z]", text):
        return False
    if text[:1].isupper():
        for s in re.findall(r"(?:^|[.!?]\s+)([a-z])", text):
            if s:
                return False
    return not re.search(r"^[,.;:]|,\s*[.!?]|\bno no\b|\bnot not\b", text, re.I)
