"""Map OpenI (IU X-ray) MeSH major terms to the project's concepts and the independent labeler's observations.

Why: the OpenI reports carry expert-assigned MeSH terms ("Cardiomegaly/mild", "Opacity/lung/base/left",
"normal"). They are a label source made by people, independent of any report-text extractor, so they
let us (1) measure how well a text labeler agrees with annotators and (2) check that a pair's chosen
text does not deny what the annotators saw.

A term is "Head/qualifier/qualifier/...". The head decides the concept, except for heads that only
name an anatomy ("Lung", "Aorta", "Spine", "Diaphragm", ...) where a qualifier word decides it
("Aorta/tortuous", "Spine/degenerative"). Laterality comes from the qualifiers left/right/bilateral.
Concept names are the keys of `findings:` / `devices:` in `medpref_data/lexicon/chest_xray.yaml`;
observation names are those of `report.independent_labeler`. Terms that name no finding ("normal",
"No Indexing", "Technical Quality of Image Unsatisfactory") map to nothing and are reported apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

SIDES = ("left", "right", "bilateral")
NON_FINDING_TERMS = {"normal", "no indexing", "technical quality of image unsatisfactory"}

# head (lower-case) -> (concept or None, observations). "*" entries are refined by QUALIFIED below.
HEADS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "opacity": ("lung_opacity", ("lung_opacity",)),
    "airspace disease": ("lung_opacity", ("lung_opacity",)),
    "infiltrate": ("lung_opacity", ("lung_opacity",)),
    "lung diseases, interstitial": ("lung_opacity", ("lung_opacity",)),
    "consolidation": ("consolidation", ("consolidation",)),
    "pneumonia": ("pneumonia", ("pneumonia",)),
    "pulmonary atelectasis": ("atelectasis", ("atelectasis",)),
    "volume loss": ("atelectasis", ("volume_loss",)),
    "cardiomegaly": ("cardiomegaly", ("cardiomegaly",)),
    "pleural effusion": ("pleural_effusion", ("pleural_effusion",)),
    "hemothorax": ("pleural_effusion", ("pleural_effusion",)),
    "hydropneumothorax": ("pneumothorax", ("pneumothorax", "pleural_effusion")),
    "pneumothorax": ("pneumothorax", ("pneumothorax",)),
    "pulmonary congestion": ("edema", ("edema",)),
    "pulmonary edema": ("edema", ("edema",)),
    "heart failure": ("edema", ("edema",)),
    "nodule": ("lung_lesion", ("lung_lesion",)),
    "mass": ("lung_lesion", ("lung_lesion",)),
    "cavitation": ("lung_lesion", ("lung_lesion",)),
    "calcified granuloma": ("granuloma", ("granuloma", "calcification")),
    "granulomatous disease": ("granuloma", ("granuloma",)),
    "granuloma": ("granuloma", ("granuloma",)),
    "calcinosis": ("calcification", ("calcification",)),
    "cicatrix": ("scarring", ("lung_opacity",)),
    "pulmonary fibrosis": ("scarring", ("pleural_other",)),
    "fibrosis": ("scarring", ("pleural_other",)),
    "fractures, bone": ("fracture", ("fracture",)),
    "emphysema": ("emphysema", ("emphysema",)),
    "pulmonary emphysema": ("emphysema", ("emphysema",)),
    "bullous emphysema": ("emphysema", ("emphysema",)),
    "pulmonary disease, chronic obstructive": ("emphysema", ("copd",)),
    "lung, hyperlucent": ("emphysema", ()),
    "blister": ("emphysema", ("bullae",)),
    "scoliosis": ("scoliosis", ("scoliosis",)),
    "kyphosis": ("scoliosis", ("kyphosis",)),
    "osteophyte": ("degenerative_changes", ("degenerative",)),
    "spondylosis": ("degenerative_changes", ("degenerative",)),
    "arthritis": ("degenerative_changes", ("degenerative",)),
    "hyperostosis, diffuse idiopathic skeletal": ("degenerative_changes", ()),
    "atherosclerosis": ("tortuous_aorta", ("atherosclerosis",)),
    "hernia, hiatal": ("hiatal_hernia", ("hernia",)),
    "hernia, diaphragmatic": (None, ("hernia",)),
    "diaphragmatic eventration": ("elevated_hemidiaphragm", ("eventration",)),
    "bronchiectasis": ("bronchiectasis", ()),
    "pneumoperitoneum": ("pneumoperitoneum", ("pneumoperitoneum",)),
    "subcutaneous emphysema": ("subcutaneous_emphysema", ()),
    "mediastinal emphysema": (None, ("pneumomediastinum",)),
    "pericardial effusion": ("pericardial_effusion", ()),
    "tuberculosis": ("tuberculosis", ()),
    "bone diseases, metabolic": (None, ("osteopenia",)),
    "osteoporosis": (None, ("osteopenia",)),
    "catheters, indwelling": ("tube_or_line", ("support_devices",)),
    "tube, inserted": ("tube_or_line", ("support_devices",)),
    "surgical instruments": ("surgical_clips", ("support_devices",)),
    "sutures": ("surgical_clips", ()),
    "mastectomy": ("surgical_clips", ()),
    "pneumonectomy": ("surgical_clips", ()),
    "implanted medical device": ("cardiac_device", ("support_devices",)),
    "medical device": (None, ("support_devices",)),
    "stents": ("orthopedic_hardware", ("support_devices",)),
    "spinal fusion": ("orthopedic_hardware", ("support_devices",)),
    "deformity": (None, ("deformity",)),
}
# (head, qualifier word) -> mapping, for anatomy heads whose meaning sits in a qualifier.
QUALIFIED: dict[tuple[str, str], tuple[str | None, tuple[str, ...]]] = {
    ("lung", "hypoinflation"): ("low_lung_volumes", ()),
    ("lung", "hyperdistention"): ("emphysema", ("hyperinflation",)),
    ("lung", "interstitial"): ("lung_opacity", ("lung_opacity", "interstitial_markings")),
    ("lung", "hilum"): ("lymphadenopathy", ()),
    ("lung", "enlarged"): ("lymphadenopathy", ()),
    ("lung", "prominent"): ("lymphadenopathy", ()),
    ("thoracic vertebrae", "degenerative"): ("degenerative_changes", ("degenerative",)),
    ("lumbar vertebrae", "degenerative"): ("degenerative_changes", ("degenerative",)),
    ("cervical vertebrae", "degenerative"): ("degenerative_changes", ("degenerative",)),
    ("spine", "degenerative"): ("degenerative_changes", ("degenerative",)),
    ("shoulder", "degenerative"): ("degenerative_changes", ("degenerative",)),
    ("aorta", "tortuous"): ("tortuous_aorta", ()),
    ("aorta, thoracic", "tortuous"): ("tortuous_aorta", ()),
    ("diaphragm", "elevated"): ("elevated_hemidiaphragm", ("elevation",)),
    ("diaphragm", "flattened"): ("emphysema", ("hyperinflation",)),
    ("costophrenic angle", "blunted"): ("pleural_effusion", ("blunting",)),
    ("cardiac shadow", "enlarged"): ("cardiomegaly", ("cardiomegaly",)),
    ("cardiac shadow", "borderline"): ("cardiomegaly", ("cardiomegaly",)),
    ("heart", "enlarged"): ("cardiomegaly", ("cardiomegaly",)),
    ("mediastinum", "prominent"): ("enlarged_cardiomediastinum", ("enlarged_cardiomediastinum",)),
    ("mediastinum", "enlarged"): ("enlarged_cardiomediastinum", ("enlarged_cardiomediastinum",)),
    ("markings", "interstitial"): ("lung_opacity", ("lung_opacity", "interstitial_markings")),
    ("thickening", "pleura"): ("pleural_thickening", ("pleural_other",)),
    ("density", "lung"): ("lung_opacity", ("lung_opacity",)),
}
# Qualified entries where a second qualifier overrides the first: (head, word) -> mapping.
OVERRIDES: dict[tuple[str, str], tuple[str | None, tuple[str, ...]]] = {
    ("lung", "lymph nodes"): ("lymphadenopathy", ()),
    ("mediastinum", "lymph nodes"): ("lymphadenopathy", ()),
    ("cicatrix", "pleura"): ("pleural_thickening", ("pleural_other",)),
    ("implanted medical device", "humerus"): ("orthopedic_hardware", ("support_devices",)),
    ("implanted medical device", "shoulder"): ("orthopedic_hardware", ("support_devices",)),
    ("implanted medical device", "cervical vertebrae"): ("orthopedic_hardware", ("support_devices",)),
}


def parse_term(term: str) -> tuple[str, list[str]]:
    """'Opacity/lung/base/left' -> ('opacity', ['lung', 'base', 'left'])."""
    parts = [p.strip().lower() for p in term.split("/")]
    return parts[0], [p for p in parts[1:] if p]


def map_term(term: str) -> tuple[str | None, tuple[str, ...], str | None] | None:
    """One term -> (concept, observations, side) or None when it names no mapped finding."""
    head, quals = parse_term(term)
    if head in NON_FINDING_TERMS:
        return None
    side = next((q for q in quals if q in SIDES), None)
    found = None
    for q in quals:
        if (head, q) in OVERRIDES:
            found = OVERRIDES[(head, q)]
            break
    if found is None:
        found = HEADS.get(head)
    if found is None:
        found = next((QUALIFIED[(head, q)] for q in quals if (head, q) in QUALIFIED), None)
    if found is None:
        return None
    return found[0], found[1], side


def is_normal(terms: Iterable[str]) -> bool:
    """True when the annotators called the study normal (the only term is 'normal')."""
    terms = [t.strip().lower() for t in terms]
    return bool(terms) and all(t == "normal" for t in terms)


def mesh_findings(terms: Iterable[str]) -> dict[str, set[str]]:
    """MeSH terms -> {project concept: sides}; an empty side set means the term gave no laterality."""
    out: dict[str, set[str]] = {}
    for term in terms:
        m = map_term(term)
        if m is None or m[0] is None:
            continue
        sides = out.setdefault(m[0], set())
        if m[2]:
            sides.add(m[2])
    return out


def mesh_observations(terms: Iterable[str]) -> set[str]:
    """MeSH terms -> the independent labeler's observation names that the annotators marked present."""
    out: set[str] = set()
    for term in terms:
        m = map_term(term)
        if m is not None:
            out.update(m[1])
    return out


def coverage(term_lists: Iterable[Iterable[str]]) -> dict:
    """Share of term occurrences mapped to a concept / an observation, over all and over finding terms."""
    total = finding = to_concept = to_obs = 0
    unmapped: Counter = Counter()
    for terms in term_lists:
        for term in terms:
            total += 1
            head, _ = parse_term(term)
            if head in NON_FINDING_TERMS:
                continue
            finding += 1
            m = map_term(term)
            if m is not None and m[0] is not None:
                to_concept += 1
            if m is not None and m[1]:
                to_obs += 1
            if m is None:
                unmapped[term] += 1
    return {
        "terms": total,
        "finding_terms": finding,
        "concept_rate": to_concept / finding if finding else 0.0,
        "observation_rate": to_obs / finding if finding else 0.0,
        "concept_rate_all": (to_concept + total - finding) / total if total else 0.0,
        "top_unmapped": unmapped.most_common(15),
    }
