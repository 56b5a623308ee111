"""Tests of the independent pair checker: labeler, MeSH mapping, pair / MeSH comparisons.

The literal sentences are real report sentences of the IU X-ray (OpenI) collection; the tests that read
../shared skip when it is absent.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from report.independent_eval import chosen_vs_mesh, issues, pair_contradictions, summarise
from report.independent_labeler import CHEXPERT_OBSERVATIONS, IndependentLabeler, default_labeler
from report.mesh_labels import coverage, is_normal, map_term, mesh_findings, mesh_observations


@pytest.fixture(scope="module")
def labeler() -> IndependentLabeler:
    return default_labeler()


# ---- labeler: single real sentences -------------------------------------------------------------

@pytest.mark.parametrize(
    "text, obs, expected",
    [
        ("No pleural effusion.", "pleural_effusion", "negative"),
        ("There is no pleural effusion or pneumothorax.", "pneumothorax", "negative"),
        ("No pneumonia, effusions, edema, pneumothorax, adenopathy, nodules or masses.", "lung_lesion", "negative"),
        ("Heart size is normal.", "cardiomegaly", "negative"),
        ("Heart size, mediastinal contour, and pulmonary vascularity are within normal limits.",
         "cardiomegaly", "negative"),
        ("The heart is not significantly enlarged.", "cardiomegaly", "negative"),
        ("There is no focal air space opacity to suggest a pneumonia.", "pneumonia", "negative"),
        ("Possible left lower lobe pneumonia.", "pneumonia", "uncertain"),
        ("Possible right lower lobe pneumonia.", "pneumonia", "uncertain"),
        ("Subtle medial left basilar opacity could represent early pneumonia.", "pneumonia", "uncertain"),
        ("The be difficult to completely exclude a superimposed pneumonia.", "pneumonia", "uncertain"),
        ("Probably scarring in the left apex, although difficult to exclude a cavitary lesion.", "lung_lesion",
         "uncertain"),
        ("Opacity in the lingula is favored to represent prominent pericardial fat, but lingular atelectasis or "
         "infiltrate cannot be ruled out.", "atelectasis", "uncertain"),
        ("There is redemonstration without significant interval change of mild subsegmental atelectasis of the "
         "left base.", "atelectasis", "positive"),
        ("No focal alveolar consolidation, no definite pleural effusion seen.", "pleural_effusion", "uncertain"),
        ("No focal alveolar consolidation, no definite pleural effusion seen.", "consolidation", "negative"),
        ("Small left pleural effusion.", "pleural_effusion", "positive"),
        ("Borderline cardiomegaly.", "cardiomegaly", "positive"),
        ("Left basilar atelectasis, not significantly changed.", "atelectasis", "positive"),
        ("Calcified granuloma in the right upper lobe.", "granuloma", "positive"),
        ("Calcified granuloma in the right upper lobe.", "calcification", "positive"),
        ("Normal heart size with mild pulmonary vascular congestion.", "edema", "positive"),
        ("Normal heart size with mild pulmonary vascular congestion.", "cardiomegaly", "negative"),
        # CheXpert's stems match whole words only: "tube" is not "tuberculosis".
        ("There is stable cavity in the right apex, XXXX related to prior tuberculosis infection.",
         "support_devices", None),
        ("Mild atelectatic changes at the left base.", "atelectasis", "positive"),
        # unmention: a pericardial effusion is not a pleural one
        ("Cardiomegaly or less XXXX, pericardial effusion is suspected.", "pleural_effusion", None),
        # anatomy named without an abnormality is no finding
        ("Heart size within normal limits, stable mediastinal and hilar contours.", "enlarged_cardiomediastinum",
         None),
        ("The mediastinum is stable.", "enlarged_cardiomediastinum", None),
        ("There is prominence of the superior mediastinum.", "enlarged_cardiomediastinum", "positive"),
    ],
)
def test_sentence_labels(labeler, text, obs, expected):
    assert labeler.label(text).get(obs) == expected, labeler.mention_labels(text)


def test_unmentioned_observations_are_absent(labeler):
    assert labeler.label("The lungs are clear.") == {}
    assert labeler.label("") == {}


def test_report_level_precedence(labeler):
    # positive in one sentence, negated in another -> positive (CheXpert)
    text = "Small left pleural effusion. No right pleural effusion."
    assert labeler.label(text)["pleural_effusion"] == "positive"
    # uncertain beats negative
    assert labeler.label("No pneumonia. Possible pneumonia.")["pneumonia"] == "uncertain"
    assert labeler.label("Possible pneumonia. No pneumonia.")["pneumonia"] == "uncertain"


def test_observation_set(labeler):
    assert set(CHEXPERT_OBSERVATIONS) <= set(labeler.observations)
    assert "no_finding" not in labeler.observations
    assert {"emphysema", "granuloma", "calcification", "scoliosis", "degenerative"} <= set(labeler.observations)


def test_matches_chexpert_labeler_output(labeler, shared):
    """The CheXpert labeler's own labelled sample reports (13 observations, No Finding aside)."""
    names = {o.replace("_", " "): o for o in CHEXPERT_OBSERVATIONS}
    code = {"1.0": "positive", "0.0": "negative", "-1.0": "uncertain"}
    rows = list(csv.DictReader(shared("chexpert_labeler_lexicon", "labeled_reports.csv").open()))
    assert rows
    for row in rows:
        got = labeler.label(row["Reports"])
        for col, value in row.items():
            obs = names.get(col.lower())
            if obs:
                assert got.get(obs) == code.get(value), (row["Reports"], obs, got)


def test_iu_reports_agree_with_mesh(labeler, shared):
    """On real OpenI reports, MeSH 'Pleural Effusion' reports are mostly labelled positive and 'normal'
    reports almost never get a positive effusion or cardiomegaly."""
    path = shared("iu_xray_openi_reports", "reports.jsonl")
    reports = [json.loads(line) for line in path.open()][:1200]
    text = {r["uid"]: f"{r.get('findings') or ''} {r.get('impression') or ''}" for r in reports}
    effusion = [r for r in reports if any(t.startswith("Pleural Effusion") for t in r["mesh_major"])]
    normal = [r for r in reports if is_normal(r["mesh_major"])]
    assert effusion and normal  # the committed excerpt has a few of each; the full OpenI set has hundreds
    hit = sum(labeler.label(text[r["uid"]]).get("pleural_effusion") == "positive" for r in effusion)
    assert hit / len(effusion) >= 0.75
    false = sum(bool({"pleural_effusion", "cardiomegaly"} & {o for o, v in labeler.label(text[r["uid"]]).items()
                                                         if v == "positive"}) for r in normal)
    assert false / len(normal) <= 0.03


# ---- MeSH mapping ---------------------------------------------------------------------------------

def test_mesh_findings_real_terms():
    terms = ["Cardiomegaly/mild", "Opacity/lung/base/left", "Pleural Effusion/right", "Granulomatous Disease",
             "Calcified Granuloma/lung/hilum/right", "Spine/degenerative", "Thoracic Vertebrae/degenerative/mild",
             "Aorta/tortuous", "Pulmonary Atelectasis/base/left", "Lung/hypoinflation", "Diaphragm/right/elevated"]
    assert mesh_findings(terms) == {
        "cardiomegaly": set(), "lung_opacity": {"left"}, "pleural_effusion": {"right"},
        "granuloma": {"right"}, "degenerative_changes": set(), "tortuous_aorta": set(),
        "atelectasis": {"left"}, "low_lung_volumes": set(), "elevated_hemidiaphragm": {"right"},
    }
    assert mesh_observations(terms) == {"cardiomegaly", "lung_opacity", "pleural_effusion", "granuloma",
                                        "calcification", "degenerative", "atelectasis", "elevation"}


def test_mesh_normal_and_non_findings():
    assert mesh_findings(["normal"]) == {} and mesh_observations(["normal"]) == set()
    assert is_normal(["normal"]) and not is_normal(["Cardiomegaly"]) and not is_normal([])
    assert map_term("No Indexing") is None
    assert map_term("Technical Quality of Image Unsatisfactory ") is None
    assert mesh_findings(["Pleural Effusion/bilateral", "Pleural Effusion/left"]) == {
        "pleural_effusion": {"bilateral", "left"}}
    assert mesh_findings(["Mediastinum/lymph nodes/enlarged"]) == {"lymphadenopathy": set()}
    assert mesh_findings(["Catheters, Indwelling/right"]) == {"tube_or_line": {"right"}}


def test_mesh_concepts_exist_in_project_lexicon():
    import yaml

    from report.independent_eval import MESH_OBSERVABLE
    from report.mesh_labels import HEADS, OVERRIDES, QUALIFIED

    lex = yaml.safe_load((Path(__file__).resolve().parents[1] / "medpref_data/lexicon/chest_xray.yaml").read_text())
    known = set(lex["findings"]) | set(lex["devices"])
    used = {c for table in (HEADS, QUALIFIED, OVERRIDES) for c, _ in table.values() if c}
    assert used <= known, used - known
    assert MESH_OBSERVABLE <= set(default_labeler().observations), MESH_OBSERVABLE - set(default_labeler().observations)


def test_mesh_coverage_on_openi(shared):
    path = shared("iu_xray_openi_reports", "reports.jsonl")
    terms = [json.loads(line)["mesh_major"] for line in path.open()]
    cov = coverage(terms)
    assert cov["finding_terms"] >= len(terms) // 2  # most reports name at least one finding
    assert cov["concept_rate"] >= 0.85


# ---- pair and MeSH comparisons ---------------------------------------------------------------------

REFERENCE = ("The heart is normal in size. Small left pleural effusion. No pneumothorax. "
             "Degenerative changes of the thoracic spine.")
REJECTED = "Moderate cardiomegaly. No pleural effusion. No pneumothorax. Degenerative changes of the thoracic spine."


def test_pair_contradictions_resolved(labeler):
    chosen = REFERENCE
    out = pair_contradictions(REFERENCE, REJECTED, chosen, labeler)
    assert out["rejected_issue_kinds"] == {"cardiomegaly": "contradiction", "pleural_effusion": "contradiction"}
    assert out["rejected_contradictions"] == 2 and out["rejected_unsupported"] == 0
    assert out["chosen_issues"] == 0 and out["resolved"] == 2 and out["added"] == 0
    assert out["unsupported_denials"] == 0
    assert out["observations"]["cardiomegaly"] == {"reference": "negative", "rejected": "positive",
                                                   "chosen": "negative"}


def test_pair_contradictions_added_and_denials(labeler):
    chosen = ("The heart is normal in size. No pleural effusion. No pneumothorax. Possible pneumonia. "
              "No fracture. Right lower lobe atelectasis.")
    out = pair_contradictions(REFERENCE, REJECTED, chosen, labeler)
    # effusion still denied; atelectasis is a new unsupported claim; pneumonia hedged raises nothing
    assert out["chosen_issue_kinds"] == {"pleural_effusion": "contradiction", "atelectasis": "unsupported"}
    assert out["resolved_observations"] == ["cardiomegaly"]
    assert out["added_observations"] == ["atelectasis"]
    assert out["unsupported_denial_observations"] == ["fracture"]
    # labels given as dicts are used as they are
    same = pair_contradictions(labeler.label(REFERENCE), REJECTED, chosen, labeler)
    assert same["chosen_issue_kinds"] == out["chosen_issue_kinds"]


def test_issues_ignore_uncertain():
    assert issues({"pneumonia": "uncertain"}, {"pneumonia": "negative"}) == {}
    assert issues({"pneumonia": "positive"}, {"pneumonia": "uncertain"}) == {}
    assert issues({"edema": "negative"}, {"edema": "positive"}) == {"edema": "contradiction"}


def test_chosen_vs_mesh(labeler):
    terms = ["Pleural Effusion/left", "Thoracic Vertebrae/degenerative"]
    out = chosen_vs_mesh(REJECTED, terms, labeler)
    assert out["mesh_denial_observations"] == ["pleural_effusion"]
    assert out["mesh_unsupported_observations"] == ["cardiomegaly"]
    ok = chosen_vs_mesh(REFERENCE, terms, labeler)
    assert ok["mesh_denials"] == 0 and ok["mesh_unsupported_claims"] == 0
    normal = chosen_vs_mesh("Mild cardiomegaly. The lungs are clear.", ["normal"], labeler)
    assert normal["mesh_normal"] and normal["mesh_unsupported_observations"] == ["cardiomegaly"]
    assert chosen_vs_mesh("Mild cardiomegaly.", ["No Indexing"], labeler)["mesh_informative"] is False


def test_summarise(labeler):
    good = pair_contradictions(REFERENCE, REJECTED, REFERENCE, labeler)
    bad = pair_contradictions(REFERENCE, REJECTED, REJECTED, labeler)
    rows = [{**good, **chosen_vs_mesh(REFERENCE, ["Pleural Effusion/left"], labeler)},
            {**bad, **chosen_vs_mesh(REJECTED, ["Pleural Effusion/left"], labeler)}]
    s = summarise(rows)
    assert s["pairs"] == 2 and s["rejected_issues"] == 4 and s["resolved"] == 2
    assert s["resolve_rate"] == pytest.approx(0.5)
    assert s["pairs_with_chosen_issues"] == pytest.approx(0.5)
    assert s["mesh_rows"] == 2 and s["mesh_denials"] == 1 and s["mesh_denials_rate"] == pytest.approx(0.5)
    assert summarise([])["pairs"] == 0
