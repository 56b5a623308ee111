"""Turn dataset finding labels into a short reference report.

Datasets with labels but no report text (NIH ChestX-ray14, ChestX-Det, TBX11K) still need a reference,
and it is the ground truth for error detection, so each label maps to a plain radiology sentence that
names the finding with the words a report would use ("Effusion" -> "Pleural effusion.").
"""

from __future__ import annotations

from collections.abc import Iterable

NORMAL_SENTENCE = "No acute cardiopulmonary abnormality."
NO_TUBERCULOSIS_SENTENCE = "No evidence of tuberculosis."

# Keys are labels normalised by _key(): lower case, "_" and "-" as spaces.
_SENTENCES = {
    "atelectasis": "Atelectasis.",
    "calcification": "Calcification.",
    "cardiomegaly": "Cardiomegaly.",
    "consolidation": "Consolidation.",
    "diffuse nodule": "Diffuse pulmonary nodules.",
    "edema": "Pulmonary edema.",
    "effusion": "Pleural effusion.",
    "emphysema": "Emphysema.",
    "fibrosis": "Pulmonary fibrosis.",
    "fracture": "Fracture.",
    "hernia": "Hiatal hernia.",
    "infiltrate": "Pulmonary infiltrate.",
    "infiltration": "Pulmonary infiltrate.",
    "mass": "Pulmonary mass.",
    "nodule": "Pulmonary nodule.",
    "pleural thickening": "Pleural thickening.",
    "pneumonia": "Pneumonia.",
    "pneumothorax": "Pneumothorax.",
    # TBX11K categories (CamelCase in the COCO file).
    "activetuberculosis": "Findings consistent with active pulmonary tuberculosis.",
    "obsoletepulmonarytuberculosis": "Findings consistent with inactive pulmonary tuberculosis.",
    "pulmonarytuberculosis": "Findings consistent with pulmonary tuberculosis.",
}

_NORMAL_LABELS = {"no finding", "normal", "healthy"}


def _key(label: str) -> str:
    return " ".join(label.replace("_", " ").replace("-", " ").lower().split())


def label_sentence(label: str) -> str:
    """The report sentence for one finding label; unknown labels become 'Their words.'."""
    key = _key(label)
    if key in _SENTENCES:
        return _SENTENCES[key]
    return key[:1].upper() + key[1:] + "."


def labels_to_report(labels: Iterable[str], normal: str = NORMAL_SENTENCE) -> str:
    """One sentence per distinct finding in first-seen order; ``normal`` when there is none."""
    sentences: list[str] = []
    for label in labels:
        if not label or not label.strip() or _key(label) in _NORMAL_LABELS:
            continue
        sentence = label_sentence(label)
        if sentence not in sentences:
            sentences.append(sentence)
    return " ".join(sentences) if sentences else normal
