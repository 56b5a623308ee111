"""Where in the chest a VQA answer points: image-stage locations for the lesion-corrupted image."""

from __future__ import annotations

from editors.vqa.gold import question_options
from editors.vqa.words import _norms, content_words, tokenize

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

