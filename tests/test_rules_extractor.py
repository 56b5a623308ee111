"""The rule extractor on real report sentences from the shared IU X-ray data."""

from __future__ import annotations

import pytest

from clinical.extract.rules import RuleExtractor
from clinical.findings import findings_from_extraction


@pytest.fixture(scope="module")
def ex() -> RuleExtractor:
    return RuleExtractor()


def certainty(ex: RuleExtractor, text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in findings_from_extraction(ex.extract(text), ex.lexicon).findings:
        out.setdefault(f.concept, set()).add(f.certainty)
    return out


def test_offsets_are_exact_on_the_input(ex, iu_generations):
    for row in iu_generations[:80]:
        for text in (row["generated_report"], row["reference_report"]):
            e = ex.extract(text)
            for ent in e.entities:
                assert text[ent.start : ent.end] == ent.text
                assert ent.kind in ("Anatomy", "Observation")
            ids = {ent.id for ent in e.entities}
            for r in e.relations:
                assert r.source in ids and r.target in ids
                assert r.kind in ("modify", "located_at", "suggestive_of")


def test_negation_covers_a_list(ex):
    # OpenI reference sentence
    c = certainty(ex, "No focal consolidation, pleural effusion, or pneumothorax identified.")
    assert c == {"consolidation": {"absent"}, "pleural_effusion": {"absent"}, "pneumothorax": {"absent"}}


def test_negation_scope_is_forward_only(ex):
    # generated report: "cardiomegaly without overt heart failure"
    c = certainty(ex, "cardiomegaly without overt heart failure .")
    assert c["cardiomegaly"] == {"present"}
    assert c["edema"] == {"absent"}


def test_negation_scope_ends_at_sentence_and_but(ex):
    c = certainty(ex, "No pneumothorax. Small left pleural effusion.")
    assert c == {"pneumothorax": {"absent"}, "pleural_effusion": {"present"}}
    c = certainty(ex, "No pleural effusion but there is a small pneumothorax.")
    assert c["pleural_effusion"] == {"absent"} and c["pneumothorax"] == {"present"}


def test_post_negation(ex):
    c = certainty(ex, "No pleural effusion is seen. Pneumothorax is not identified.")
    assert c == {"pleural_effusion": {"absent"}, "pneumothorax": {"absent"}}


def test_uncertainty(ex):
    # generated: "opacities left lung base may represent atelectasis versus scarring"
    c = certainty(ex, "xxxx opacities left lung base may represent atelectasis versus scarring .")
    assert c["atelectasis"] == {"uncertain"}
    assert c["lung_opacity"] == {"present"}
    assert certainty(ex, "Possible small right pleural effusion.")["pleural_effusion"] == {"uncertain"}
    assert certainty(ex, "Pneumonia cannot be excluded.")["pneumonia"] == {"uncertain"}


def test_negation_governs_a_later_uncertainty_cue(ex):
    c = certainty(ex, "there is no focal airspace consolidation to suggest pneumonia .")
    assert c["pneumonia"] == {"absent"} and c["consolidation"] == {"absent"}


def test_normal_statement_denies_its_anatomy_group(ex):
    c = certainty(ex, "Lungs are clear bilaterally. Heart size is normal.")
    assert c["consolidation"] == {"absent"} and c["cardiomegaly"] == {"absent"}
    assert "pleural_effusion" not in c  # "lungs are clear" says nothing about the pleura


def test_laterality_zone_and_severity(ex):
    text = "Extensive airspace disease in the left base. Small right pleural effusion."
    fs = findings_from_extraction(ex.extract(text), ex.lexicon).findings
    opacity = next(f for f in fs if f.concept == "lung_opacity")
    effusion = next(f for f in fs if f.concept == "pleural_effusion")
    assert opacity.laterality == {"left"} and "base" in opacity.zones and opacity.severity == 3
    assert effusion.laterality == {"right"} and effusion.severity == 1
    assert text[effusion.severity_span[0] : effusion.severity_span[1]] == "Small"


def test_deid_tokens_do_not_break_scope(ex):
    # generated report with the IU de-identification token
    c = certainty(ex, "no pulmonary vascular congestion . no xxxx edema . calcified left hilar lymph xxxx .")
    assert c["edema"] == {"absent"}
    assert c["calcification"] == {"present"}


def test_abbreviation_defined_in_text(ex):
    text = "Chronic obstructive pulmonary disease (COPD). Findings of COPD are stable."
    e = ex.extract(text)
    copd = [ent for ent in e.entities if ent.text == "COPD"]
    assert len(copd) == 2 and all(ent.concept == "emphysema" for ent in copd)


def test_lexicon_phrases_from_chexpert(ex):
    # CheXpert mention phrases (shared/data/chexpert_labeler_lexicon) are matched, stems included
    for phrase, concept in [("atelectatic changes", "atelectasis"), ("vascular congestion", "edema"),
                            ("enlarged heart", "cardiomegaly"), ("nodular opacities", "lung_lesion")]:
        found = {f.concept for f in findings_from_extraction(ex.extract(phrase), ex.lexicon).findings}
        assert concept in found, phrase
