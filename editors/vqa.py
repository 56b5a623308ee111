"""VQA answers in free text: normalise them, find where a response states its answer, edit only there.

A VQA response is judged on one thing, its answer, so the pair's edit is the answer span and nothing
else: the rest of the response keeps its wording byte for byte. Reading is conservative. An answer
that cannot be located with confidence is not read (``VqaReadError``; the caller rejects the
response with its reason), because a pair built on a misread answer teaches the wrong preference.

Two kinds of gold answer:

- yes/no: the response's answer is a leading "Yes"/"No" and/or the polarity of the clause that
  talks about the question ("no evidence of", "is not seen", "absent", an antonym of the question's
  adjective, another modality than the one asked about). A flip edits the token and that clause
  together, so the sentence never says "No, there is a pleural effusion".
- everything else (closed choices, open answers): the gold's normalised words are looked for in the
  answer sentence; the answer is wrong when that sentence names another value of the same kind (the
  other option of an "A or B?" question, left for right, CT for MRI, another organ, plane or number,
  another answer from ``candidates``), or when a short answer phrase differs from the gold.

Normalisation (``normalize_answer``): case, punctuation, articles and filler ("side", "plane",
"weighted"), plurals, numbers as words, spelling variants (x-ray/radiograph, transverse/axial,
hypo-dense/hypodense, grey/gray) and organ adjectives (pulmonary -> lung, renal -> kidney).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from editors.base import SpanEdit

EDITOR = "vqa"
ERROR_TYPE = "wrong_answer"


class VqaReadError(Exception):
    """The response's answer cannot be read with confidence; ``reason`` is the rejects-ledger code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------------------------------------- words

_WORD = re.compile(r"\d+(?:st|nd|rd|th)\b|\d+(?:\.\d+)?|[A-Za-z]+(?:'[A-Za-z]+)?\d*")

_NUMBERS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}
_NUMBER_WORDS = {v: k for k, v in _NUMBERS.items()}
_ORDINALS = {w: f"{i + 1}{'st' if i == 0 else 'nd' if i == 1 else 'rd' if i == 2 else 'th'}" for i, w in enumerate(
    "first second third fourth fifth sixth seventh eighth ninth tenth".split())}

# spelling variants and adjectives that name the same thing as a noun in an answer
_SYNONYMS = {
    "radiograph": "xray", "radiography": "xray", "radiographic": "xray", "cxr": "xray", "roentgenogram": "xray",
    "mr": "mri", "transverse": "axial", "bilaterally": "bilateral", "mid": "middle", "grey": "gray",
    "tumour": "tumor", "oedema": "edema", "haemorrhage": "hemorrhage", "hemorrhagic": "hemorrhage",
    "pelvic": "pelvis", "abdominal": "abdomen", "thorax": "chest", "thoracic": "chest", "cardiac": "heart",
    "pulmonary": "lung", "renal": "kidney", "hepatic": "liver", "splenic": "spleen", "gastric": "stomach",
    "cerebral": "brain", "cerebellar": "cerebellum", "colonic": "colon", "esophageal": "esophagus",
    "sonography": "ultrasound", "ultrasonography": "ultrasound", "sonogram": "ultrasound",
    "usg": "ultrasound", "apices": "apex", "apical": "apex",
    "bases": "base", "basal": "base", "basilar": "base", "hilar": "hilum", "hila": "hilum",
    "superiorly": "superior", "inferiorly": "inferior", "anteriorly": "anterior", "posteriorly": "posterior",
    "laterally": "lateral", "medially": "medial", "enlargement": "enlarged",
}
# words written as one, two or hyphenated: merged before comparison
_MERGES = {
    ("x", "ray"): "xray", ("hypo", "dense"): "hypodense", ("hyper", "dense"): "hyperdense",
    ("iso", "dense"): "isodense", ("hypo", "intense"): "hypointense", ("hyper", "intense"): "hyperintense",
    ("iso", "intense"): "isointense", ("non", "contrast"): "noncontrast", ("gall", "bladder"): "gallbladder",
    ("computed", "tomography"): "ct", ("cat", "scan"): "ct", ("magnetic", "resonance"): "mri",
    ("ultra", "sound"): "ultrasound", ("t1", "weighted"): "t1", ("t2", "weighted"): "t2",
}
_MERGE_3 = {("magnetic", "resonance", "imaging"): "mri"}
_NO_SINGULAR = {"this", "is", "was", "has", "does", "its", "his", "yes", "thus", "pancreas", "abdomen",
                "ascites", "diabetes", "pneumocystis", "lens", "process", "ms", "gas", "bronchus", "sinus",
                "uterus", "fetus", "thalamus", "hiatus", "stenosis", "less", "across", "plus", "status"}


@dataclass(frozen=True)
class Word:
    """One word of a text: its characters ``text[start:end]`` and its normal form ``norm``."""

    text: str
    norm: str
    start: int
    end: int

    @property
    def low(self) -> str:
        return self.text.lower()


def _norm_word(raw: str) -> str:
    w = raw.lower()
    if w.endswith("'s"):
        w = w[:-2]
    if w in _NUMBERS:
        return _NUMBERS[w]
    if w in _ORDINALS:
        return _ORDINALS[w]
    w = _SYNONYMS.get(w, w)
    if w.endswith("n't") or w in _NO_SINGULAR or len(w) <= 3 or w.endswith(("ss", "us", "is", "ous")):
        return w
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("s"):
        w = w[:-1]
    return _SYNONYMS.get(w, w)


def tokenize(text: str) -> list[Word]:
    """Words with offsets and normal forms; "x-ray", "X ray" and "xray" become one word "xray"."""
    return list(_tokenize(text))


@lru_cache(maxsize=65536)
def _tokenize(text: str) -> tuple[Word, ...]:
    raw = [Word(m.group(), _norm_word(m.group()), m.start(), m.end()) for m in _WORD.finditer(text)]
    out: list[Word] = []
    i = 0
    while i < len(raw):
        merged = None
        for n, table in ((3, _MERGE_3), (2, _MERGES)):
            grp = raw[i : i + n]
            if len(grp) == n and all(text[a.end : b.start] in ("", "-", " ") for a, b in zip(grp, grp[1:], strict=False)):
                norm = table.get(tuple(w.low for w in grp)) or table.get(tuple(w.norm for w in grp))
                if norm:
                    merged = (n, Word(text[grp[0].start : grp[-1].end], norm, grp[0].start, grp[-1].end))
                    break
        if merged:
            out.append(merged[1])
            i += merged[0]
        else:
            out.append(raw[i])
            i += 1
    return tuple(out)


# words that carry no answer content: ignored when answers are compared
FILLER = frozenset(
    "a an the side sided of patient weighted plane view image images scan film study located in on at within "
    "and region area to".split())
# words that are never an answer by themselves (verbs, pronouns, generic nouns), for the echo reading
_STOP = frozenset(
    "there is are was were be been being it its this that these those they he she which who what where how "
    "why when seen see noted note shows show showing shown demonstrate demonstrates demonstrated demonstrating "
    "reveal reveals revealed visible visualized visualised identified present presence appear appears "
    "appearing seem seems look looks likely consistent with suggest suggests suggestive evidence finding "
    "findings picture photo can could may might would will should also most probably possibly here image "
    "imaging scan answer abnormality abnormalities lesion lesions located location found observed evident "
    "depicted displayed has have had does do did i we you our your their some any very well both as by "
    "from for into onto over under than then think believe guess say like similar represent represents most "
    "seem".split())
_NEG_WORDS = frozenset("no not without absent none neither nor cannot never negative lacks lacking absence".split())
_UNCERTAIN = re.compile(
    r"\b(cannot|can't|can not|unable to|not possible to|difficult to|hard to|impossible to) "
    r"(be )?(determine|determined|tell|assess|assessed|say|evaluate|evaluated|answer|know)\b|"
    r"\b(not sure|unclear|uncertain|indeterminate|i don't know|i do not know|not clear)\b",
    re.I)
_BE = frozenset("is are was were".split())
_AUX = frozenset("is are was were will would should could may might must does do did has have had".split())
_ARTICLES = frozenset("a an some any".split())
_PRONOUN_START = frozenset("there it this that the they i we he she these those".split())
_VERBS = frozenset("show demonstrate reveal contain appear seem look suggest involve include".split())
_DET_VERBS = frozenset("show demonstrate reveal contain include".split())  # "shows a X" -> "shows no X"

YES_WORDS = frozenset("yes yeah yep correct true affirmative".split())
NO_WORDS = frozenset("no nope incorrect false negative".split())

# word pairs where one in the response answers "no" to a question asking about the other
_ANTONYMS = {a: b for x, y in [
    ("normal", "abnormal"), ("symmetric", "asymmetric"), ("symmetrical", "asymmetrical"),
    ("regular", "irregular"), ("homogeneous", "heterogeneous"), ("hyperdense", "hypodense"),
    ("hyperintense", "hypointense"), ("increased", "decreased"), ("larger", "smaller"), ("present", "absent"),
    ("enlarged", "normal"), ("male", "female"), ("solid", "cystic"), ("benign", "malignant"),
] for a, b in ((x, y), (y, x))}

# ------------------------------------------------------------------------------------ answer kinds

_CATEGORIES: dict[str, list[str]] = {
    "laterality": ["left", "right", "bilateral"],
    "height": ["upper", "lower", "middle"],
    "vertical": ["superior", "inferior"],
    "depth": ["anterior", "posterior"],
    "medial": ["medial", "lateral"],
    "modality": ["ct", "mri", "x-ray", "ultrasound", "pet"],
    "plane": ["axial", "coronal", "sagittal"],
    "projection": ["pa", "ap"],
    "sequence": ["t1", "t2", "flair", "dwi", "adc"],
    "density": ["hyperdense", "hypodense", "isodense"],
    "intensity": ["hyperintense", "hypointense", "isointense"],
    "texture": ["homogeneous", "heterogeneous"],
    "symmetry": ["symmetric", "asymmetric"],
    "contour": ["regular", "irregular"],
    "consistency": ["solid", "cystic"],
    "sex": ["male", "female"],
    "color": ["black", "white", "gray"],
    "region": ["chest", "abdomen", "head", "pelvis", "neck"],
    "organ": ["lung", "heart", "trachea", "esophagus", "aorta",
              "liver", "spleen", "kidney", "pancreas", "stomach", "gallbladder", "colon", "small bowel",
              "large bowel", "bladder", "rectum", "duodenum", "appendix", "brain", "cerebellum", "spinal cord"],
}
# the plausible wrong value of each term (default: the next one of its kind)
_ALTERNATIVE = {
    "left": "right", "right": "left", "bilateral": "left", "middle": "lower",
    "x-ray": "ct", "ultrasound": "ct", "pet": "ct", "mri": "ct",
    "sagittal": "axial", "coronal": "axial", "flair": "t2", "dwi": "t2", "adc": "dwi", "t2": "t1",
    "isodense": "hypodense", "isointense": "hyperintense", "gray": "white",
    "aorta": "esophagus", "lung": "heart", "heart": "lung", "trachea": "esophagus", "esophagus": "trachea",
    "liver": "spleen", "spleen": "liver", "kidney": "liver", "pancreas": "liver", "stomach": "colon",
    "gallbladder": "liver", "colon": "small bowel", "small bowel": "colon", "large bowel": "small bowel",
    "bladder": "rectum", "rectum": "bladder", "duodenum": "stomach", "appendix": "colon",
    "brain": "cerebellum", "cerebellum": "brain", "spinal cord": "brain", "neck": "head", "pelvis": "abdomen",
}
# how a value is written when it is put into a response
_DISPLAY = {"ct": "CT", "mri": "MRI", "xray": "X-ray", "pa": "PA", "ap": "AP", "t1": "T1", "t2": "T2",
            "flair": "FLAIR", "dwi": "DWI", "adc": "ADC", "pet": "PET"}


def _norms(phrase: str) -> tuple[str, ...]:
    return tuple(w.norm for w in tokenize(phrase))


_TERMS: dict[tuple[str, ...], tuple[str, str]] = {}  # norms -> (category, canonical norm string)
for _cat, _values in _CATEGORIES.items():
    for _v in _values:
        _TERMS[_norms(_v)] = (_cat, " ".join(_norms(_v)))
_ALT = {" ".join(_norms(k)): " ".join(_norms(v)) for k, v in _ALTERNATIVE.items()}
for _cat, _values in _CATEGORIES.items():
    _vals = [" ".join(_norms(v)) for v in _values]
    for _i, _v in enumerate(_vals):
        _ALT.setdefault(_v, _vals[(_i + 1) % len(_vals)])
_DISPLAY_OF = {" ".join(_norms(k)): v for k, v in _DISPLAY.items()} | {
    " ".join(_norms(v)): v for vs in _CATEGORIES.values() for v in vs if " ".join(_norms(v)) not in _DISPLAY}
_MAX_TERM = max(len(k) for k in _TERMS)


@dataclass(frozen=True)
class Term:
    """A value of a known kind found in a text: words ``words`` say ``value`` of ``category``."""

    category: str
    value: str
    words: tuple[Word, ...]

    @property
    def start(self) -> int:
        return self.words[0].start

    @property
    def end(self) -> int:
        return self.words[-1].end


def find_terms(words: Sequence[Word]) -> list[Term]:
    """Known-kind values (laterality, modality, organ, number, ...) in words, longest match first."""
    content = [w for w in words if w.norm not in FILLER]
    out: list[Term] = []
    i = 0
    while i < len(content):
        for n in range(min(_MAX_TERM, len(content) - i), 0, -1):
            hit = _TERMS.get(tuple(w.norm for w in content[i : i + n]))
            if hit:
                out.append(Term(hit[0], hit[1], tuple(content[i : i + n])))
                i += n
                break
        else:
            if _is_number(content[i].norm):
                out.append(Term("number", content[i].norm, (content[i],)))
            i += 1
    return out


def _is_number(norm: str) -> bool:
    return bool(re.fullmatch(r"\d+(?:\.\d+)?", norm))


# -------------------------------------------------------------------------------------- normalising


def content_words(words: Sequence[Word]) -> list[Word]:
    return [w for w in words if w.norm not in FILLER]


def normalize_answer(text: str) -> str:
    """An answer's normal form: "The Right-sided pleural effusions." -> "right pleural effusion";
    "Yes"/"no evidence"/"not seen" -> "yes"/"no"; "two" -> "2"; "transverse plane" -> "axial"."""
    yn = yes_no_of(text)
    if yn is not None:
        return yn
    return " ".join(w.norm for w in content_words(tokenize(str(text))))


def same_answer(a: str, b: str) -> bool:
    """Equal answers up to normalisation and word order ("right hepatic lobe" = "right lobe of the liver")."""
    return sorted(normalize_answer(a).split()) == sorted(normalize_answer(b).split())


_GOLD_YES = {"yes", "y", "true", "present", "positive"}
_GOLD_NO = {"no", "n", "false", "absent", "negative", "none", "not seen", "not seen here", "no evidence",
            "not present", "not visible", "not visualized"}


def yes_no_of(answer: str) -> str | None:
    """"yes" or "no" for a gold answer that is one (variants included), else None."""
    s = " ".join(re.sub(r"[^a-z ]", " ", str(answer).lower()).split())
    if s in _GOLD_YES:
        return "yes"
    if s in _GOLD_NO:
        return "no"
    return None


@dataclass
class Gold:
    """The gold answer and what the question offers: its options ("left or right?") and its terms."""

    text: str
    yes_no: str | None
    terms: tuple[str, ...]
    options: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # (display, norms) besides gold

    @classmethod
    def parse(cls, answer: str, question: str) -> Gold:
        text = " ".join(str(answer).split())
        terms = tuple(w.norm for w in content_words(tokenize(text)))
        return cls(text, yes_no_of(text), terms, question_options(question, terms))

    @property
    def normal(self) -> str:
        return self.yes_no or " ".join(self.terms)


def question_options(question: str, gold_terms: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """The other choices of an "A or B?" / "A, B or C?" question whose answer is one of them."""
    m = re.search(r"([^?]*?)\bor\b([^?]*)", question, re.I)
    if not m or not gold_terms:
        return []
    left_text, right_text = m.group(1), m.group(2)
    left = left_text.split(",")
    items = [p for p in left[:-1] if p.strip() and len(p.split()) <= 3]  # "lung, liver or heart"
    before = content_words(tokenize(left[-1]))
    after = content_words(tokenize(right_text))
    n = len(gold_terms)
    raw: list[list[Word]] = []
    g = tuple(gold_terms)
    if tuple(w.norm for w in after[:n]) == g or (after and after[0].norm == g[0]):
        raw.append(before[-max(n, 1):])
    elif tuple(w.norm for w in before[-n:]) == g or (before and before[-1].norm == g[-1]):
        raw.append(after[: max(n, 1)])
    else:
        return []
    if items:
        raw.extend(content_words(tokenize(p))[-max(n, 1):] for p in items[-3:])
    out = []
    for ws in raw:
        ws = [w for w in ws if w.norm not in _STOP or w.norm in g]
        norms = tuple(w.norm for w in ws)
        if norms and norms != g and not set(norms) <= set(g):
            out.append((" ".join(w.text for w in ws), norms))
    return out


# ------------------------------------------------------------------------------------ text structure


def sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans (end includes the final punctuation); a decimal point does not end a sentence."""
    out, start = [], 0
    for m in re.finditer(r"(?<!\d)[.!?]+(?!\d)|\n+", text):
        if text[start : m.end()].strip():
            out.append((start, m.end()))
        start = m.end()
    if text[start:].strip():
        out.append((start, len(text)))
    return out


_CLAUSE_BREAK = re.compile(r"[,;:()]|\b(?:but|however|although|though|whereas|while)\b", re.I)


def clauses(text: str, start: int, end: int) -> list[tuple[int, int]]:
    out, pos = [], start
    for m in _CLAUSE_BREAK.finditer(text, start, end):
        if text[pos : m.start()].strip():
            out.append((pos, m.start()))
        pos = m.end()
    if text[pos:end].strip():
        out.append((pos, end))
    return out


def _within(words: Sequence[Word], span: tuple[int, int]) -> list[Word]:
    return [w for w in words if span[0] <= w.start and w.end <= span[1]]


def is_negation(w: Word) -> bool:
    return w.low in _NEG_WORDS or w.low.endswith("n't")


def uncertain(text: str) -> bool:
    return bool(_UNCERTAIN.search(text))


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def language_of(text: str) -> str:
    """"en" for Latin-script text, "zh" (or "other") otherwise; answers are edited in English only."""
    if _CJK.search(text):
        return "zh"
    letters = [c for c in text if c.isalpha()]
    if letters and sum(c.isascii() for c in letters) < 0.8 * len(letters):
        return "other"
    return "en"


# ---------------------------------------------------------------------------------- writing values


def display(norm_value: str, template: str = "", lower_text: bool = False) -> str:
    """A value as it should appear in the response: acronyms upper-case, capitalised like ``template``."""
    out = _DISPLAY_OF.get(norm_value, norm_value)
    if _is_number(norm_value) and template and not template[:1].isdigit():
        out = _NUMBER_WORDS.get(norm_value, norm_value)
    return match_case(template, out, lower_text)


def gold_display(gold_text: str) -> str:
    """The gold answer written mid-sentence: "Right Upper Lobe" -> "right upper lobe", "ct" -> "CT"."""
    parts = []
    for piece in re.split(r"(\s+)", gold_text.strip().rstrip(".")):
        ws = tokenize(piece)
        if len(ws) == 1 and ws[0].text == piece and ws[0].norm in _DISPLAY:
            parts.append(_DISPLAY[ws[0].norm])
        elif piece.isupper() and len(piece) <= 5:
            parts.append(piece)
        else:
            parts.append(piece.lower())
    return "".join(parts)


def match_case(template: str, word: str, lower_text: bool = False) -> str:
    if lower_text:
        return word.lower()
    if not template:
        return word
    if template.isupper() and len(template) > 1 and not word.isupper():
        return word.upper() if len(word) <= 5 else word[:1].upper() + word[1:]
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    if word.isupper() or any(c.isupper() for c in word[1:]):
        return word  # an acronym stays one
    return word[:1].lower() + word[1:]


def _vowel_sound(word: str) -> bool:
    if not word:
        return False
    if word[:1].isdigit():
        return word.startswith(("8", "11", "18"))
    if word.isupper() and len(word) <= 5:
        return word[0] in "AEFHILMNORSX"
    low = word.lower()
    if low.startswith(("uni", "use", "usu", "one", "eu", "ur")):
        return False
    return low[0] in "aeiou" or low.startswith(("hour", "honest"))


def _plural(word: str) -> bool:
    low = word.lower()
    return len(low) > 3 and low.endswith("s") and not low.endswith(("ss", "us", "is", "ous"))


def replace_words(text: str, words: Sequence[Word], first: int, last: int, replacement: str) -> SpanEdit:
    """Replace words[first..last] by ``replacement``, fixing an "a"/"an" just before it."""
    start, end = words[first].start, words[last].end
    if first > 0 and words[first - 1].low in ("a", "an") and text[words[first - 1].end : start] == " ":
        art = words[first - 1]
        head = replacement.split()[0] if replacement.split() else ""
        if _plural(replacement.split()[-1] if replacement.split() else ""):
            new_art = ""
        else:
            new_art = "an" if _vowel_sound(head) else "a"
        if new_art != art.low:
            new_art = match_case(art.text, new_art) if new_art else ""
            if not new_art and art.text[:1].isupper():
                replacement = replacement[:1].upper() + replacement[1:]
            return SpanEdit(art.start, end, (new_art + " " if new_art else "") + replacement, ERROR_TYPE, EDITOR)
    return SpanEdit(start, end, replacement, ERROR_TYPE, EDITOR)


# ------------------------------------------------------------------------------------------ yes / no


@dataclass
class YesNoReading:
    """How a response answers a yes/no question."""

    polarity: str  # "yes" or "no"
    token: Word | None  # the leading "Yes"/"No", if any
    clause: list[Word]  # the clause about the question (may be empty)
    related: bool  # the clause mentions something the question asks about (or is only "it is")
    cues: list[Word]  # negation words in the clause
    antonyms: list[tuple[Word, str]]  # (word, the question's word it contradicts)
    conflicts: list[tuple[Term, Term]]  # (response term, the question's term of the same kind)
    how: str


def _question_content(question: str) -> tuple[set[str], list[Term]]:
    qw = tokenize(question)
    return {w.norm for w in content_words(qw) if w.norm not in _STOP}, find_terms(qw)


_ANSWER_IS = re.compile(r"\banswer(?: to (?:the|this) question)? (?:is|would be|:)\s*[\"']?(yes|no)\b[\"']?\s*[.!]?\s*$",
                        re.IGNORECASE)


def read_yes_no(text: str, question: str) -> YesNoReading:
    """The response's yes/no answer; raises VqaReadError when it has none or contradicts itself."""
    words = tokenize(text)
    if not words:
        raise VqaReadError("answer_not_found", "the response has no words")
    if uncertain(text):
        raise VqaReadError("ambiguous_answer", "the response says the answer cannot be determined")
    token, tpol = None, None
    first = words[0]
    lead = text[: first.start].strip(" \t\n\"'*(-")
    after = text[first.end : first.end + 1]
    if not lead:
        nxt = words[1].low if len(words) > 1 else ""
        if first.low in YES_WORDS and (first.low == "yes" or not after or after in ",.;:!-"):
            token, tpol = first, "yes"
        elif first.low in NO_WORDS and (not after or after in ",.;:!-" or (first.low == "no" and nxt in _PRONOUN_START)):
            token, tpol = first, "no"
    if token is None:
        m = _ANSWER_IS.search(text)
        if m:  # "The answer is yes." : the word is the answer, and the only thing to flip
            token = next(w for w in words if w.start == m.start(1))
            return YesNoReading("yes" if token.low == "yes" else "no", token, [], True, [], [], [], "token")
    q_norms, q_terms = _question_content(question)
    clause = _answer_clause(text, words, token.end if token else 0, q_norms)
    content = [w for w in content_words(clause) if w.norm not in _STOP and not is_negation(w)]
    related = not content or any(w.norm in q_norms for w in content)
    cues = [w for w in clause if is_negation(w)]
    antonyms = [(w, _ANTONYMS[w.norm]) for w in clause
                if w.norm in _ANTONYMS and _ANTONYMS[w.norm] in q_norms and w.norm not in q_norms]
    c_terms = find_terms(clause)
    conflicts = []
    for qt in q_terms:
        if qt.category in ("number", "region") or any(t.value == qt.value for t in c_terms):
            continue
        conflicts += [(t, qt) for t in c_terms if t.category == qt.category and t.value != qt.value]
    if conflicts:
        related = True
    body = None
    if clause and (related or not token):
        if conflicts and cues:
            raise VqaReadError("ambiguous_answer", "the response negates a different value than the one asked about")
        neg = (len(cues) + bool(antonyms) + bool(conflicts)) % 2 == 1
        body = "no" if neg else "yes"
    if token is None:
        if not clause or not related:
            raise VqaReadError("answer_not_found", "no yes/no and no clause about the question")
        how = "conflict" if conflicts else "antonym" if antonyms else "negation" if cues else "assertion"
        return YesNoReading(body, None, clause, related, cues, antonyms, conflicts, how)
    if body is not None and body != tpol:
        raise VqaReadError("ambiguous_answer", f"the response says {token.text!r} but its clause reads {body!r}")
    return YesNoReading(tpol, token, clause, related, cues, antonyms, conflicts, "token")


def _answer_clause(text: str, words: list[Word], after: int, q_norms: set[str]) -> list[Word]:
    """Words of the clause that answers: the first clause after ``after`` (in its sentence) that
    mentions the question, else the first clause of that sentence."""
    for s, e in sentences(text):
        if e <= after:
            continue
        cls = clauses(text, max(s, after), e)
        if not cls:
            continue
        for c in cls:
            ws = _within(words, c)
            if any(w.norm in q_norms for w in content_words(ws) if w.norm not in _STOP):
                return ws
        return _within(words, cls[0])
    return []


def flip_yes_no(text: str, reading: YesNoReading, question: str) -> list[SpanEdit] | None:
    """Edits turning the response's answer into the opposite one: the leading token and the clause."""
    target = "no" if reading.polarity == "yes" else "yes"
    edits: list[SpanEdit] = []
    if reading.token is not None:
        new = "No" if target == "no" else "Yes"
        edits.append(SpanEdit(reading.token.start, reading.token.end, match_case(reading.token.text, new),
                              ERROR_TYPE, EDITOR))
        if not reading.related:
            return None  # "No, the lungs are clear." for "Is there an effusion?": no coherent flip
    if reading.clause:
        body = _flip_clause(text, reading, question, target)
        if body is None:
            return None
        edits.extend(body)
    return edits or None


def _flip_clause(text: str, r: YesNoReading, question: str, target: str) -> list[SpanEdit] | None:
    ws = r.clause
    lower_text = not any(c.isupper() for c in text)
    if r.antonyms:  # "the lungs are abnormal" -> "the lungs are normal"
        w, q = r.antonyms[0]
        return [SpanEdit(w.start, w.end, match_case(w.text, _word_as_written(question, q), lower_text),
                         ERROR_TYPE, EDITOR)]
    if r.conflicts:  # "this is a CT" -> "this is an MRI"
        t, qt = r.conflicts[0]
        idx = [i for i, w in enumerate(ws) if w in t.words]
        return [replace_words(text, ws, idx[0], idx[-1], display(qt.value, t.words[0].text, lower_text))]
    if r.cues:
        return _make_positive(text, ws, r.cues[0])
    return _make_negative(text, ws)


def _word_as_written(question: str, norm: str) -> str:
    for w in tokenize(question):
        if w.norm == norm:
            return w.text.lower()
    return norm


def _make_negative(text: str, ws: list[Word]) -> list[SpanEdit] | None:
    def ins(pos: int, s: str) -> list[SpanEdit]:
        return [SpanEdit(pos, pos, s, ERROR_TYPE, EDITOR)]

    def swap(w: Word, s: str) -> list[SpanEdit]:
        return [SpanEdit(w.start, w.end, match_case(w.text, s), ERROR_TYPE, EDITOR)]

    for i, w in enumerate(ws):
        nxt = ws[i + 1] if i + 1 < len(ws) else None
        low = w.low
        if low == "there" and nxt is not None and nxt.low in _BE:
            after = ws[i + 2] if i + 2 < len(ws) else None
            if after is None:
                return ins(nxt.end, " not")
            if after.low in _ARTICLES:
                return swap(after, "no")
            return ins(after.start, "no ")
        if low == "can":
            return swap(w, "cannot")
        if low in ("has", "have", "had") and nxt is not None and nxt.low in _ARTICLES:
            return swap(nxt, "no")
        if low in _AUX:
            return ins(w.end, " not")
        base = low[:-1] if low.endswith("s") and low[:-1] in _VERBS else low if low in _VERBS else None
        if base:
            if base in _DET_VERBS and nxt is not None and nxt.low in _ARTICLES:
                return swap(nxt, "no")
            aux = "does" if base != low else "do"
            return [SpanEdit(w.start, w.end, match_case(w.text, f"{aux} not {base}"), ERROR_TYPE, EDITOR)]
        if low == "with":
            return swap(w, "without")
        if low == "present":
            return swap(w, "absent")
    # a fragment ("Yes, pleural effusion."): "no" before its first word
    first = ws[0] if ws else None
    if first is None:
        return None
    if first.low in ("a", "an", "the"):
        return swap(first, "no")
    if first.text[:1].isupper() and not first.text.isupper() and not text[: first.start].strip():
        return [SpanEdit(first.start, first.start + 1, "No " + first.text[0].lower(), ERROR_TYPE, EDITOR)]
    return ins(first.start, "no ")


def _make_positive(text: str, ws: list[Word], cue: Word) -> list[SpanEdit] | None:
    i = ws.index(cue)
    prev = ws[i - 1] if i > 0 else None
    nxt = ws[i + 1] if i + 1 < len(ws) else None
    low = cue.low

    def delete() -> list[SpanEdit]:
        """Remove the cue and one space; capitalise the next word when the cue began the sentence."""
        if nxt is not None and text[cue.end : nxt.start] == " ":
            if cue.text[:1].isupper() and not (prev and text[prev.end : cue.start].strip() == ""):
                return [SpanEdit(cue.start, nxt.start + 1, nxt.text[:1].upper(), ERROR_TYPE, EDITOR)]
            return [SpanEdit(cue.start, nxt.start, "", ERROR_TYPE, EDITOR)]
        if prev is not None and text[prev.end : cue.start] == " ":
            return [SpanEdit(prev.end, cue.end, "", ERROR_TYPE, EDITOR)]
        return None

    if low == "no":
        if nxt is None:
            return None
        if nxt.norm in ("evidence", "sign") or (prev is not None and prev.low in ("are", "were")) or _plural(nxt.text):
            return delete()
        if prev is not None and prev.low in ("is", "was", "has", "had", "with", "shows", "show", "demonstrates",
                                             "reveals", "contains"):
            return [SpanEdit(cue.start, cue.end, match_case(cue.text, "an" if _vowel_sound(nxt.text) else "a"),
                             ERROR_TYPE, EDITOR)]
        return delete()
    if low == "not":
        return delete()
    if low == "cannot":
        return [SpanEdit(cue.start, cue.end, match_case(cue.text, "can"), ERROR_TYPE, EDITOR)]
    if low.endswith("n't"):
        base = {"can't": "can", "won't": "will"}.get(low, low[:-3])
        return [SpanEdit(cue.start, cue.end, match_case(cue.text, base), ERROR_TYPE, EDITOR)]
    swaps = {"without": "with", "absent": "present", "negative": "positive", "lacks": "has",
             "absence": "presence"}
    if low in swaps:
        return [SpanEdit(cue.start, cue.end, match_case(cue.text, swaps[low]), ERROR_TYPE, EDITOR)]
    return None


# ------------------------------------------------------------------------------------- open answers


@dataclass
class OpenReading:
    """How a response answers an open or choice question."""

    correct: bool
    how: str  # exact | words | conflict | bare | echo
    answer: str  # the normal form of what the response answers
    words: list[Word]  # the answer words (the gold match, or the wrong phrase)
    sentence_words: list[Word]
    conflicts: list[tuple[tuple[Word, ...], str]] = field(default_factory=list)  # (words, replacement)


def _find_seq(content: Sequence[Word], terms: Sequence[str]) -> list[Word] | None:
    n = len(terms)
    for i in range(len(content) - n + 1):
        if tuple(w.norm for w in content[i : i + n]) == tuple(terms):
            return list(content[i : i + n])
    return None


def candidate_answers(candidates: Sequence[str] | None, gold: Gold) -> list[tuple[str, tuple[str, ...]]]:
    """Usable other answers: different from the gold, neither part of it nor containing it."""
    out, seen = [], {gold.terms}
    for c in candidates or ():
        parsed = _candidate(str(c))
        if parsed is None:
            continue
        norms = parsed[1]
        if norms in seen or set(norms) <= set(gold.terms) or set(gold.terms) <= set(norms):
            continue
        seen.add(norms)
        out.append(parsed)
    return out


@lru_cache(maxsize=65536)
def _candidate(c: str) -> tuple[str, tuple[str, ...]] | None:
    c = " ".join(c.split())
    if not c or language_of(c) != "en" or yes_no_of(c):
        return None
    norms = tuple(w.norm for w in content_words(tokenize(c)))
    return (c, norms) if norms else None


def read_open(text: str, gold: Gold, question: str = "", candidates: Sequence[str] | None = None) -> OpenReading:
    """Read the answer of a response to an open or choice question, or raise VqaReadError."""
    if not gold.terms:
        raise VqaReadError("unsupported_answer", f"the gold answer {gold.text!r} has no comparable words")
    if uncertain(text):
        raise VqaReadError("ambiguous_answer", "the response says the answer cannot be determined")
    words = tokenize(text)
    g_terms = find_terms(tokenize(gold.text))
    g_by_cat: dict[str, list[Term]] = {}
    for t in g_terms:
        g_by_cat.setdefault(t.category, []).append(t)
    others = list(gold.options) + candidate_answers(candidates, gold)
    for s in sentences(text):
        sw = _within(words, s)
        content = content_words(sw)
        match = _find_seq(content, gold.terms)
        if match and _lists_more(find_terms(sw), g_by_cat):
            match = None  # "lung and stomach" for the gold list "lung, heart": not the answer
        if match:
            if any(is_negation(w) for w in sw if w.end <= match[0].start and _same_clause(text, w, match[0])):
                raise VqaReadError("ambiguous_answer", "the response names the gold answer under a negation")
            return OpenReading(True, "exact", gold.normal, match, sw)
        s_terms = find_terms(sw)
        conflicts = _category_conflicts(s_terms, g_by_cat)
        norms = {w.norm for w in content}
        if set(gold.terms) <= norms and not conflicts and not _any_other_value(s_terms, g_by_cat):
            found = [w for w in content if w.norm in gold.terms]
            return OpenReading(True, "words", gold.normal, found, sw)
        if not conflicts:
            for _disp, onorms in others:
                hit = _find_seq(content, onorms)
                if hit:  # another option or candidate: the whole phrase it stands in is the answer
                    i, j = _phrase_bounds(sw, sw.index(hit[0]), sw.index(hit[-1]))
                    conflicts = [(tuple(sw[i : j + 1]), gold_display(gold.text))]
                    break
        if conflicts:
            wrong = " ".join(w.norm for ws, _ in conflicts for w in ws)
            return OpenReading(False, "conflict", wrong, [w for ws, _ in conflicts for w in ws], sw, conflicts)
    bare = _bare_phrase(text, words)
    if bare:
        return OpenReading(False, "bare", " ".join(w.norm for w in content_words(bare)), bare, words)
    echo = _echo_phrase(text, words, question)
    if echo:
        return OpenReading(False, "echo", " ".join(w.norm for w in content_words(echo[0])), echo[0], echo[1])
    raise VqaReadError("answer_not_found", f"no answer to compare with {gold.text!r} in the response")


def _same_clause(text: str, a: Word, b: Word) -> bool:
    return not _CLAUSE_BREAK.search(text, a.end, b.start)


def _category_conflicts(s_terms: list[Term], g_by_cat: dict[str, list[Term]]) -> list[tuple[tuple[Word, ...], str]]:
    """Response terms of a kind the gold names, with another value, where the gold's value is absent."""
    out = []
    present = {(t.category, t.value) for t in s_terms}
    for cat, gts in g_by_cat.items():
        if any((cat, g.value) in present for g in gts):
            continue
        for t in s_terms:
            if t.category == cat:
                out.append((t.words, gts[0].value))
                break
    return out


def _lists_more(s_terms: list[Term], g_by_cat: dict[str, list[Term]]) -> bool:
    """The gold lists several values of a kind ("lung, heart") and the sentence names one more."""
    return any(len(g_by_cat.get(t.category, ())) > 1 and t.value not in {g.value for g in g_by_cat[t.category]}
               for t in s_terms)


def _any_other_value(s_terms: list[Term], g_by_cat: dict[str, list[Term]]) -> bool:
    return any(t.category in g_by_cat and t.value not in {g.value for g in g_by_cat[t.category]} for t in s_terms)


_LEAD_IN = re.compile(r"^\s*(?:the answer is|answer\s*:|it is|it's|this is|these are|they are|that is)\s*", re.I)


def _bare_phrase(text: str, words: list[Word]) -> list[Word] | None:
    """A response that is only an answer phrase ("Pancreas.", "The right upper lobe"): its words."""
    if len(sentences(text)) != 1:
        return None
    lead = _LEAD_IN.match(text)
    ws = [w for w in words if not lead or w.start >= lead.end()]
    content = content_words(ws)
    if len(content) == 1 and content[0].low in YES_WORDS | NO_WORDS:
        return content  # "No." to "What modality is this?"
    if not content or len(content) > 6:
        return None
    if any(w.low in _AUX or w.low in _STOP - {"both"} or is_negation(w) for w in content):
        return None
    return content


def _echo_phrase(text: str, words: list[Word], question: str) -> tuple[list[Word], list[Word]] | None:
    """In the first sentence, the first run of words the question does not contain ("The mass is located
    in the right kidney." for "Where is the mass located?" -> "right kidney")."""
    sents = sentences(text)
    if not sents or not question:
        return None
    q = {w.norm for w in tokenize(question)}
    sw = _within(words, sents[0])
    if any(is_negation(w) for w in sw):
        return None
    run: list[Word] = []
    gap: list[Word] = []
    for w in sw:
        answer_word = w.norm not in q and w.norm not in FILLER and w.norm not in _STOP and w.low not in _STOP
        if answer_word:
            run.extend(gap if run else [])
            gap = []
            run.append(w)
        elif run and w.norm in FILLER and w.low not in ("and",):
            gap.append(w)
        elif run:
            break
    content = content_words(run)
    if not content or len(content) > 6:
        return None
    return run, sw


def fix_open(text: str, reading: OpenReading, gold: Gold) -> Iterator[list[SpanEdit]]:
    """Proposals turning a wrong answer into the gold one, smallest first."""
    lower_text = not any(c.isupper() for c in text)
    sw = reading.sentence_words
    if reading.conflicts:
        edits = []
        for ws, value in reading.conflicts:
            i, j = sw.index(ws[0]), sw.index(ws[-1])
            if i == j and _is_number(value) and _is_number(ws[0].norm):
                edits.append(number_edit(text, sw, i, value, lower_text))
                continue
            rep = display(value, ws[0].text, lower_text) if value in _DISPLAY_OF \
                else match_case(ws[0].text, value, lower_text)
            edits.append(replace_words(text, sw, i, j, rep))
        yield sorted(edits, key=lambda e: e.start)
    if reading.words:
        # the whole answer phrase around the wrong words
        i, j = sw.index(reading.words[0]), sw.index(reading.words[-1])
        i, j = _phrase_bounds(sw, i, j)
        rep = match_case(sw[i].text, gold_display(gold.text), lower_text)
        yield [replace_words(text, sw, i, j, rep)]


def number_edit(text: str, sw: list[Word], i: int, value: str, lower_text: bool = False) -> SpanEdit:
    """Replace the number sw[i] by ``value`` in its style ("two" or "2"); going between one and many,
    the counted noun after it and an "is"/"are" before it agree ("is one kidney" -> "are two kidneys")."""
    old = sw[i]
    rep = display(value, old.text, lower_text)
    if (old.norm == "1") == (value == "1"):
        return SpanEdit(old.start, old.end, rep, ERROR_TYPE, EDITOR)
    start, end, parts = old.start, old.end, [rep]
    if i + 1 < len(sw) and text[old.end : sw[i + 1].start] == " " and sw[i + 1].text.isalpha() \
            and sw[i + 1].norm not in FILLER and sw[i + 1].low not in _STOP:
        noun = sw[i + 1]
        parts.append(_pluralize(noun.text) if value != "1" else _singularize(noun.text))
        end = noun.end
    if i > 0 and text[sw[i - 1].end : old.start] == " " and sw[i - 1].low in ("is", "are", "was", "were"):
        verb = sw[i - 1]
        parts.insert(0, match_case(verb.text, {"is": "are", "are": "is", "was": "were", "were": "was"}[verb.low]))
        start = verb.start
    return SpanEdit(start, end, " ".join(parts), ERROR_TYPE, EDITOR)


def _pluralize(word: str) -> str:
    if _plural(word):
        return word
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")


def _singularize(word: str) -> str:
    if not _plural(word):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    return word[:-2] if word.endswith(("ches", "shes", "xes", "sses")) else word[:-1]


def _phrase_bounds(sw: list[Word], i: int, j: int) -> tuple[int, int]:
    """Grow words i..j to the answer phrase: neighbours that are neither filler, stop word nor negation."""
    def inside(w: Word) -> bool:
        return w.norm not in FILLER and w.low not in _STOP and w.norm not in _STOP and not is_negation(w)

    while i > 0 and inside(sw[i - 1]):
        i -= 1
    while j + 1 < len(sw) and inside(sw[j + 1]):
        j += 1
    return i, j


def inject_open(text: str, reading: OpenReading, gold: Gold, candidates: Sequence[str] | None,
                rng: random.Random) -> Iterator[tuple[str, list[SpanEdit]]]:
    """(what was injected, edits) proposals putting a plausible wrong answer where the right one is."""
    lower_text = not any(c.isupper() for c in text)
    sw = reading.sentence_words
    words = reading.words
    i, j = sw.index(words[0]), sw.index(words[-1])
    contiguous = reading.how == "exact"
    if contiguous:
        for disp, _ in gold.options:  # the other choice of "A or B?"
            yield disp, [replace_words(text, sw, i, j, match_case(sw[i].text, gold_display(disp), lower_text))]
    terms = find_terms(words)
    for t in terms:
        if t.category == "number":
            n = float(t.value)
            value = str(int(n) + 1) if n.is_integer() else str(round(n + 1, 2))
        elif t.value in _ALT:
            value = _ALT[t.value]
        else:
            continue
        a, b = sw.index(t.words[0]), sw.index(t.words[-1])
        if t.category == "number":
            yield value, [number_edit(text, sw, a, value, lower_text)]
        else:
            yield value, [replace_words(text, sw, a, b, display(value, t.words[0].text, lower_text))]
    if contiguous:
        pool = candidate_answers(candidates, gold)
        rng.shuffle(pool)
        for disp, _ in pool[:8]:
            yield disp, [replace_words(text, sw, i, j, match_case(sw[i].text, gold_display(disp), lower_text))]


# ------------------------------------------------------------------------------------------ locations

_ZONE_WORDS = {"upper": "upper", "middle": "middle", "lower": "lower", "apex": "apex", "base": "base",
               "hilum": "hilum", "costophrenic": "costophrenic", "retrocardiac": "retrocardiac",
               "heart": "heart", "cardiomegaly": "heart", "mediastinum": "mediastinum",
               "mediastinal": "mediastinum", "lung": "lung"}
_CHEST_WORDS = frozenset(_norms(
    "lung lungs pleural hemithorax chest hilum apex costophrenic retrocardiac lingula pneumothorax "
    "effusion hemidiaphragm diaphragm rib ribs mediastinum mediastinal heart cardiomegaly lobe"))
_NON_LUNG_LOBES = frozenset(_norms("temporal frontal parietal occipital liver hepatic caudate quadrate"))


def answer_locations(question: str, gold_text: str) -> list[dict]:
    """Chest anatomy the gold answer (else the question) names, as image-stage locations (else [])."""
    gold_words, q_words = tokenize(gold_text), tokenize(question)
    norms = {w.norm for w in gold_words + q_words}
    chest = norms & (_CHEST_WORDS - {"lobe"}) or ("lobe" in norms and not norms & _NON_LUNG_LOBES)
    if not chest:
        return []
    gold_terms = tuple(w.norm for w in content_words(gold_words))
    # in "A or B?" the question names every option: only the answer says where
    sources = [gold_words] if question_options(question, gold_terms) else [gold_words, q_words]
    laterality = zone = None
    for ws in sources:
        for w in ws:
            if laterality is None and w.norm in ("left", "right", "bilateral"):
                laterality = w.norm
            if zone is None and w.norm in _ZONE_WORDS:
                zone = _ZONE_WORDS[w.norm]
    if laterality is None and zone is None:
        return []
    if zone in ("heart", "mediastinum"):
        laterality = None
    return [{"laterality": laterality, "zone": zone, "diseased_sides": []}]
