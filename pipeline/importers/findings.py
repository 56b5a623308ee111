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


# The label vocabularies of the label-only datasets: what their ground truth can speak about. A model
# report mentioning a pacemaker is not wrong against "Cardiomegaly." from NIH labels, which never list
# devices; `meta.reference_scope` carries this so error detection stays within it.
NIH_LABELS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
              "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
CHESTX_DET_LABELS = ("Atelectasis", "Calcification", "Cardiomegaly", "Consolidation", "Diffuse Nodule", "Effusion",
                     "Emphysema", "Fibrosis", "Fracture", "Mass", "Nodule", "Pleural Thickening", "Pneumothorax")
TBX11K_LABELS = ("PulmonaryTuberculosis",)


def scope_text(labels: Iterable[str]) -> str:
    """The label vocabulary as report sentences (the text stage reads the concepts out of it)."""
    return labels_to_report(labels, normal="")
