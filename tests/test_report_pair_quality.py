"""What a radiologist checks in a report pair, asserted on the real IU and NIH model reports:
chosen sides that read as report text, no denial the reference does not make, missed findings
inserted whole, nothing cut mid-measurement, varied injected errors, label lists written as
sentences. The failures named here are the ones found by reading earlier outputs (issue 10)."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from clinical.fluency import edit_problems, sentence_problems, split_sentences
from editors.base import EditContext
from editors.clauses import removal
from editors.text_pairs import TextPairError, TextPairMaker

NEGATION = re.compile(r"\b(no|not|without|negative for|free of)\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def maker() -> TextPairMaker:
    return TextPairMaker()


@pytest.fixture(scope="module")
def pairs(maker, iu_generations):
    out = {}
    for i, row in enumerate(iu_generations):
        try:
            out[row["id"]] = (row, maker.make(row["generated_report"], row["reference_report"], seed=i))
        except TextPairError as e:
            out[row["id"]] = (row, e)
    return out


def _made(pairs):
    return [(r, p) for r, p in pairs.values() if not isinstance(p, TextPairError)]


def _norm(s: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", s.lower().replace("xxxx", "")))


# -- the fluency checker on real sentences -------------------------------------------------------

@pytest.mark.parametrize("broken", [
    "no heart is mildly enlarged .",  # iu-2837
    "mm nodular density projecting over the right posterior 4th rib .",  # iu-2130
    "possible cm opacity .",
    "xxxx are appear normal",  # iu-2267
    "Impression: 1. no 2.",
    "No heart size is enlarged.",
    "No focal consolidation, evidence of pneumothorax is seen.",
    "the cardiomediastinal silhouette is normal in size and contour and .",
    "with no nodular soft tissue contour containing liver .",
    "moderate - to - has increased since ___, apical pleural tube still in place.",  # nih-00000013_027
])
def test_fluency_checker_flags_the_broken_sentences_edits_made(broken):
    assert any(sentence_problems(broken[s:e]) for s, e in split_sentences(broken))


def test_fluency_checker_passes_what_radiologists_and_models_wrote(iu_generations):
    sents = [t[s:e] for r in iu_generations for t in (r["generated_report"], r["reference_report"])
             for s, e in split_sentences(t) if t[s:e].strip(" .")]
    flagged = [s for s in sents if sentence_problems(s)]
    assert len(sents) > 10 * len(iu_generations)
    assert len(flagged) / len(sents) < 0.01, flagged[:10]


# -- pairs ------------------------------------------------------------------------------------------

def test_no_structural_fluency_failure_in_any_pair(pairs):
    for row, p in _made(pairs):
        before, after = (p.rejected, p.chosen) if p.on_policy == "rejected" else (p.chosen, p.rejected)
        assert not edit_problems(before, after), (row["id"], edit_problems(before, after))


def test_no_denial_the_reference_does_not_make(pairs):
    """A corrected chosen side writes a negation only inside a sentence copied from the reference."""
    for row, p in _made(pairs):
        if p.on_policy != "rejected":
            continue
        ref = _norm(row["reference_report"])
        for e in p.edits:
            for a, b in split_sentences(e.after):
                if NEGATION.search(e.after[a:b]):
                    assert _norm(e.after[a:b]) in ref, (row["id"], e.after)


def test_inserted_findings_are_whole_reference_sentences(pairs):
    """No cut fragments: inserted text is one or more full sentences of the reference, numbers kept."""
    n = 0
    for row, p in _made(pairs):
        if p.on_policy != "rejected":
            continue
        ref = _norm(row["reference_report"])
        for e in p.edits:
            if e.error_type != "missed_finding":
                continue
            for s, t in split_sentences(e.after):
                body = _norm(e.after[s:t])
                if body:
                    n += 1
                    assert body in ref, (row["id"], e.after)
                    assert not re.search(r"(^|\s)(mm|cm)\b", e.after[s:t]) or re.search(r"\d\s*(mm|cm)\b",
                                                                                      e.after[s:t])
    assert n > len(pairs) / 10


@pytest.mark.parametrize("uid,bad", [
    ("2837", r"\bno heart\b|possible cm\b"),
    ("1316", r"\bno degenerative disc disease in the thoracic spine with osteophyte"),
    ("1951", r"\bno elevated right hemidiaphragm"),
    ("1323", r"\bnot hyperexpanded"),
    ("1881", r"\bshow no fractures"),
    ("2130", r"(^|\. )mm nodular"),
    ("2385", r"\bsmall nodules \."),
    ("2267", r"\bare appear\b"),
])
def test_named_failures_do_not_recur(pairs, uid, bad):
    if uid not in pairs:
        pytest.skip(f"iu-{uid} is not in this copy of the data")
    _row, p = pairs[uid]
    if isinstance(p, TextPairError):
        assert p.reason and p.detail  # a reject with a reason is an acceptable outcome
        return
    assert not re.search(bad, p.chosen) and not (p.on_policy == "chosen" and re.search(bad, p.rejected))


def test_right_statements_stay_when_wrong_ones_go(pairs, maker):
    """iu-612: the correct denial of pneumonia and the degenerative changes must not be deleted with the
    false rib fractures (or the pair is a reject)."""
    if "612" not in pairs:
        pytest.skip("iu-612 absent")
    _row, p = pairs["612"]
    if not isinstance(p, TextPairError):
        assert "degenerative changes" in p.chosen
        assert "rib fractures" not in p.chosen


def test_injected_errors_are_varied(pairs):
    kinds = Counter(p.notes["injection"] for _r, p in _made(pairs) if p.on_policy == "chosen")
    assert sum(kinds.values()) >= 10
    assert len(kinds) >= 3, kinds
    assert max(kinds.values()) / sum(kinds.values()) <= 0.6, kinds


# -- the clause reader ---------------------------------------------------------------------------

def _ctx(maker, response, reference):
    ref = maker.reference_findings(reference)
    an = maker.analyse(response, ref)
    ctx = EditContext.build(response, an.findings, reference, ref, maker.lexicon)
    return ctx, an


@pytest.mark.parametrize("response,item,expect", [
    ("no focal consolidation , pleural effusion or pneumothorax .", "pleural effusion",
     "no focal consolidation or pneumothorax ."),
    ("no focal consolidation , pleural effusion or pneumothorax .", "pneumothorax",
     "no focal consolidation or pleural effusion ."),
    ("no focal consolidation , pleural effusion or pneumothorax .", "consolidation",
     "no pleural effusion or pneumothorax ."),
    ("no focal airspace disease pleural effusion or pneumothorax .", "pleural effusion",
     "no focal airspace disease or pneumothorax ."),
])
def test_a_denied_item_leaves_its_list_and_the_rest_stays(maker, response, item, expect):
    others = [x for x in ("focal consolidation", "focal airspace disease", "pleural effusion", "pneumothorax")
              if x not in item and item not in x]
    # the reference asserts the item and denies the others, so the others are right and must stay
    ctx, _an = _ctx(maker, response, f"There is {item}. " + " ".join(f"No {x}." for x in others))
    s = response.index(item)
    f = next(f for f in ctx.findings.findings if f.start <= s < f.end or s <= f.start < s + len(item))
    ctx.doomed = {(f.start, f.end)}
    ed = removal(ctx, ctx.doomed, (f.start, f.end), "missed_finding", "test")
    assert ed is not None
    out = response[:ed.start] + ed.replacement + response[ed.end:]
    assert " ".join(out.split()) == expect


def test_a_false_finding_goes_with_its_sentence_never_negated(maker):
    response = "the heart is normal in size . there is a small left pleural effusion . no pneumothorax ."
    p = maker.make(response, "Heart size is normal. No pneumothorax.")
    assert p.chosen == "the heart is normal in size . no pneumothorax ."


def test_a_missed_finding_goes_in_as_the_reference_sentence_with_its_size(maker):
    response = "the lungs are clear . no pleural effusion . no acute cardiopulmonary abnormality ."
    reference = "There is a 10 mm nodular density projecting over the right posterior 4th rib. No effusion."
    p = maker.make(response, reference)
    assert "there is a 10 mm nodular density projecting over the right posterior 4th rib ." in p.chosen
    assert p.chosen.endswith("no acute cardiopulmonary abnormality .")


def test_disclaimers_are_not_inserted_as_findings(maker):
    response = "the lungs are clear . no pleural effusion ."
    reference = "Lungs are clear. CT scan is more sensitive in detecting small nodules."
    try:
        p = maker.make(response, reference, seed=1)
    except TextPairError as e:
        assert e.reason in ("edit_unverified", "no_error")
        return
    assert "nodules" not in p.chosen


def test_label_list_references_get_sentences_not_bare_labels(shared):
    from pipeline.importers import import_samples

    maker = TextPairMaker()
    made = total = 0
    for rec in import_samples("nih-reports", shared("nih_cxr14_rexrank_model_reports")):
        for k, resp in enumerate(rec.get("responses") or []):
            total += 1
            try:
                p = maker.make(resp, rec["reference"], seed=k, scope=rec["meta"].get("reference_scope"))
            except TextPairError:
                continue
            made += 1
            before, after = (p.rejected, p.chosen) if p.on_policy == "rejected" else (p.chosen, p.rejected)
            assert not edit_problems(before, after), edit_problems(before, after)
            for e in p.edits:
                for s, t in split_sentences(e.after):
                    words = e.after[s:t].strip(" .").lower().split()
                    if p.on_policy == "rejected" and words:
                        assert len(words) > 1 or words[0] in {"no"}, e.after  # never a bare label
    assert made >= 0.7 * total > 0


# -- omissions: significant ones go in, incidental ones are recorded, not pasted ------------------

REF_WITH_INCIDENTAL = ("Heart size is normal. There is a small right pleural effusion. "
                       "Degenerative changes of the thoracic spine. Calcified granuloma in the left upper lobe.")


def test_an_omitted_incidental_finding_is_recorded_not_pasted_in(maker):
    """iu-3459 / iu-3790: chosen grew by three pasted reference sentences (DISH, cervical fusion,
    granulomas), a rewrite toward the reference that no radiologist asks of a report; GREEN counts
    such omissions as clinically insignificant. The significant omission (the effusion) still goes in."""
    response = "the heart is normal in size . no pneumothorax . no acute bony abnormality ."
    p = maker.make(response, REF_WITH_INCIDENTAL)
    assert p.on_policy == "rejected" and "small right pleural effusion" in p.chosen
    assert "degenerative" not in p.chosen and "granuloma" not in p.chosen
    left = p.notes["omissions_left"]
    assert {"missed_finding:degenerative_changes", "missed_finding:granuloma"} <= set(left), left
    assert all("incidental" in left[k] for k in ("missed_finding:degenerative_changes", "missed_finding:granuloma"))


def test_a_response_omitting_only_incidental_findings_gets_an_injected_error(maker):
    response = ("the heart is normal in size . there is a small right pleural effusion . "
                "no pneumothorax .")
    p = maker.make(response, REF_WITH_INCIDENTAL, seed=3)
    assert p.on_policy == "chosen" and p.chosen == response
    assert "missed_finding:degenerative_changes" in p.notes["omissions_left"]


def test_a_denied_incidental_finding_is_still_an_error(maker):
    """Incidental is about omission only: 'no degenerative changes' against a reference that reports
    them is wrong, and chosen must not keep it."""
    response = ("the heart is normal in size . there is a small right pleural effusion . "
                "no degenerative changes of the spine .")
    p = maker.make(response, REF_WITH_INCIDENTAL)
    assert p.on_policy == "rejected" and "no degenerative" not in p.chosen


def test_incidental_findings_can_be_pasted_in_when_asked():
    p = TextPairMaker(type("C", (), {"insert_incidental": True})()).make(
        "the heart is normal in size . no pneumothorax .", REF_WITH_INCIDENTAL)
    assert "degenerative changes" in p.chosen


# -- failures found by reading the runs of 2026-12-01 (seed 8080) -------------------------------

def test_a_hedge_clause_is_not_inserted_without_what_it_hedges(maker):
    """iu-3865 went in as 'possibly old fractures .', cut from 'Bilateral rib deformities are noted,
    possibly old fractures.'; and the follow-up advice about a removed nodule stayed behind it."""
    response = ("the heart is normal in size . small nodule seen in the left upper lung possibly granuloma . "
                "the lungs are otherwise clear . left lung nodule . correlate with prior films if available . "
                "if none are available followup imaging in 6 months is suggested  .")
    reference = ("The heart is top normal in size. The lungs are grossly clear. Bilateral rib deformities are "
                 "noted, possibly old fractures. No acute disease.")
    p = maker.make(response, reference)
    assert "possibly old fractures" not in p.chosen or "rib deformities" in p.chosen
    assert "if none are available" not in p.chosen and "nodule" not in p.chosen


def test_a_label_list_keeps_the_denials_it_does_not_contradict(maker):
    """nih-00000013_029: 'There is no pleural effusion or pneumothorax.' against the labels 'Pleural
    effusion.' lost its right 'no pneumothorax' with the wrong item."""
    response = ("The cardiac silhouette is normal. There is no pleural effusion or pneumothorax. "
                "There is no pulmonary edema.")
    scope = "Pleural effusion. Pneumothorax. Edema. Cardiomegaly."
    p = maker.make(response, "Pleural effusion.", scope=scope)
    assert "no pneumothorax" in p.chosen.lower() and "pleural effusion." in p.chosen.lower()
    assert "no pleural effusion" not in p.chosen.lower()


def test_no_other_is_a_denial(maker):
    """'There is no other focal consolidation.' denies consolidation; it was read as asserting one."""
    found = maker.findings("There is a focal opacity in the right mid lung zone. There is no other focal consolidation.")
    assert [f.certainty for f in found.findings if f.concept == "consolidation"] == ["absent"]


def test_a_normal_word_after_but_stays_when_the_finding_goes(maker):
    """iu-779 (issue 10 named it): 'lungs are hyperexpanded but clear' lost 'clear' with the false
    hyperexpansion."""
    response = ("heart size is normal . lungs are hyperexpanded but clear . no pleural effusions or "
                "pneumothoraces .")
    p = maker.make(response, "Heart size is normal. No focal consolidation, pneumothorax or large pleural effusion.")
    assert "lungs are clear ." in p.chosen and "hyperexpanded" not in p.chosen


def test_chronic_lung_disease_is_not_contradicted_by_emphysema(maker):
    """iu-3768: against 'Changes of chronic lung disease', the response's 'hyperexpanded lungs suggestive of
    emphysema' is a way of saying it, not a false finding to delete."""
    response = ("the lungs are mildly hyperexpanded . heart size is normal . "
                "mildly hyperexpanded lungs suggestive of emphysema .")
    p = maker.make(response, "Mild cardiomegaly. Changes of chronic lung disease. No pneumothorax.")
    assert "emphysema" in p.chosen and "hyperexpanded" in p.chosen and "cardiomegaly" in p.chosen


def test_a_refusal_is_a_reject_not_a_chosen_side(maker):
    """nih-00000032_008: a chat model's refusal became the chosen side of an injected error."""
    with pytest.raises(TextPairError) as e:
        maker.make("I'm unable to analyze or interpret medical images such as X-rays. It's important to consult a "
                   "qualified medical professional.", "No acute cardiopulmonary abnormality.")
    assert e.value.reason == "refusal"


def test_free_of_airspace_disease_denies_airspace_disease_only(maker):
    """iu-2180: 'the lungs are free of focal airspace disease' was read as 'the lungs are normal' and
    replaced by the reference's nodule; it denies airspace disease, which the reference denies too."""
    found = maker.findings("the lungs are free of focal airspace disease .")
    denied = {f.concept for f in found.findings if f.certainty == "absent"}
    assert denied == {"consolidation", "lung_opacity"}
    p = maker.make("heart size is normal . the lungs are free of focal airspace disease . no pneumothorax .",
                   "Heart size normal. Stable 1.5 cm nodule left mid chest. Lungs are clear. No pneumothorax.")
    assert "free of focal airspace disease" in p.chosen and "1.5 cm nodule" in p.chosen
