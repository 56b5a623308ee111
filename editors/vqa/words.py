"""Words of VQA answers: tokens with offsets, their normal forms, and the known kinds of answer values.

Why normal forms: clinicians write one answer many ways ("CXR", "chest X-ray", "radiograph"; "PA",
"posteroanterior"; "R", "right"; "two", "2"; plurals and articles), and an equivalent answer must
count as right. Normalisation (``normalize_answer``): case, punctuation, articles and filler ("side",
"plane", "weighted"), plurals, numbers as words, units, spelling variants (x-ray/radiograph,
transverse/axial, hypo-dense/hypodense, grey/gray) and organ adjectives (pulmonary -> lung).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

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
    "posteroanterior": "pa", "anteroposterior": "ap", "rt": "right", "lt": "left", "r": "right", "l": "left",
    "centimeter": "cm", "centimetre": "cm", "millimeter": "mm", "millimetre": "mm", "chestxray": "xray",
}
# words written as one, two or hyphenated: merged before comparison
_MERGES = {
    ("x", "ray"): "xray", ("hypo", "dense"): "hypodense", ("hyper", "dense"): "hyperdense",
    ("iso", "dense"): "isodense", ("hypo", "intense"): "hypointense", ("hyper", "intense"): "hyperintense",
    ("iso", "intense"): "isointense", ("non", "contrast"): "noncontrast", ("gall", "bladder"): "gallbladder",
    ("computed", "tomography"): "ct", ("cat", "scan"): "ct", ("magnetic", "resonance"): "mri",
    ("ultra", "sound"): "ultrasound", ("chest", "xray"): "xray",
    ("plain", "film"): "xray", ("t1", "weighted"): "t1", ("t2", "weighted"): "t2",
}
_MERGE_3 = {("magnetic", "resonance", "imaging"): "mri", ("chest", "x", "ray"): "xray"}
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
    "seem based according judging looking answer so".split())
_NEG_WORDS = frozenset("no not without absent none neither nor cannot never negative lacks lacking absence".split())
_UNCERTAIN = re.compile(
    r"\b(cannot|can't|can not|unable to|not possible to|difficult to|hard to|impossible to) "
    r"(be )?(determine|determined|tell|assess|assessed|say|evaluate|evaluated|answer|know)\b|"
    r"\b(not sure|unclear|uncertain|indeterminate|i don't know|i do not know|(?:it is|it's|this is) not clear)\b",
    re.I)
_BE = frozenset("is are was were".split())
_AUX = frozenset("is are was were will would should could may might must does do did has have had".split())
_ARTICLES = frozenset("a an some any".split())
_PRONOUN_START = frozenset("there it this that the they i we he she these those".split())
_VERBS = frozenset("show demonstrate reveal contain appear seem look suggest involve include display exhibit depict "
                   "indicate exist affect".split())
_DET_VERBS = frozenset("show demonstrate reveal contain include display exhibit depict".split())  # "shows a X" -> "shows no X"

YES_WORDS = frozenset("yes yeah yep correct true affirmative".split())
NO_WORDS = frozenset("no nope incorrect false negative".split())

# word pairs where one in the response answers "no" to a question asking about the other
_ANTONYM_PAIRS = [
    ("normal", "abnormal"), ("symmetric", "asymmetric"), ("symmetrical", "asymmetrical"),
    ("regular", "irregular"), ("homogeneous", "heterogeneous"), ("hyperdense", "hypodense"),
    ("hyperintense", "hypointense"), ("increased", "decreased"), ("larger", "smaller"), ("present", "absent"),
    ("enlarged", "normal"), ("male", "female"), ("solid", "cystic"), ("benign", "malignant"),
    ("midline", "deviated"), ("midline", "shifted"), ("sharp", "blunted"), ("expanded", "collapsed"),
    ("intact", "fractured"), ("patent", "obstructed"), ("clear", "opacified"), ("normal", "widened"),
    ("normal", "dilated"), ("normal", "hyperinflated"), ("normal", "abnormality"), ("clear", "abnormality"),
]
_ANTONYMS: dict[str, frozenset[str]] = {}  # a word -> the words it contradicts
for _x, _y in _ANTONYM_PAIRS:
    _ANTONYMS[_x] = _ANTONYMS.get(_x, frozenset()) | {_y}
    _ANTONYMS[_y] = _ANTONYMS.get(_y, frozenset()) | {_x}

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

