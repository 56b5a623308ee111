"""Text pairs on the 296 real model reports of shared/data/iu_xray_model_generations."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinical.metrics import differing_token_positions, word_edit_ratio
from editors.text_pairs import TextPairError, TextPairMaker
from pipeline.token_masks import load_tokenizer, token_masks


@pytest.fixture(scope="module")
def maker() -> TextPairMaker:
    return TextPairMaker()


@pytest.fixture(scope="module")
def pairs(maker, iu_generations):
    out = []
    for i, row in enumerate(iu_generations):
        try:
            out.append((row, maker.make(row["generated_report"], row["reference_report"], seed=i)))
        except TextPairError as e:
            out.append((row, e))
    return out


def outside_edits_identical(p) -> bool:
    """Text between edits is byte-identical on both sides, and edits' before/after are what they say."""
    r_pos = c_pos = 0
    for e in sorted(p.edits, key=lambda e: e.rejected_start):
        if p.rejected[r_pos : e.rejected_start] != p.chosen[c_pos : e.chosen_start]:
            return False
        if p.rejected[e.rejected_start : e.rejected_end] != e.before or p.chosen[e.chosen_start : e.chosen_end] != e.after:
            return False
        r_pos, c_pos = e.rejected_end, e.chosen_end
    return p.rejected[r_pos:] == p.chosen[c_pos:]


def test_every_response_ends_as_a_pair_or_a_reason(pairs):
    for _row, p in pairs:
        if isinstance(p, TextPairError):
            assert p.reason and p.detail
        else:
            assert p.chosen != p.rejected and p.edits and p.error_types


def test_detected_errors_are_fixed_and_verified(maker, pairs):
    """Every contradiction is fixed in every pair; only an omission may be left (chosen then says
    less than the reference, never something against it)."""
    found = fixed = 0
    for row, p in pairs:
        if isinstance(p, TextPairError) or p.on_policy != "rejected":
            continue
        ref = maker.reference_findings(row["reference_report"])
        before = maker.analyse(p.rejected, ref)
        after = maker.analyse(p.chosen, ref)
        assert not after.keys - before.keys, f"{row['id']}: chosen has a new error {after.keys - before.keys}"
        left = [e for e in after.errors if not (e.error_type == "missed_finding" and e.kind == "omitted")]
        assert not left, f"{row['id']}: chosen still contradicts the reference: {[e.key for e in left]}"
        found += len(before.keys)
        fixed += len(before.keys - after.keys)
    assert found > len(pairs)  # these are real, clinically wrong reports
    assert fixed / found >= 0.95


def test_most_responses_become_pairs(pairs):
    """Most responses pair; a response that is several reports in a row is a reject on its own
    (a chosen side that keeps them would teach the policy to run on)."""
    made = sum(not isinstance(p, TextPairError) for _r, p in pairs)
    several = sum(isinstance(p, TextPairError) and p.reason == "several_reports" for _r, p in pairs)
    # the benchmark prints the exact share (issue figure: 85%); here a floor that real data must clear
    assert made / len(pairs) >= 0.75
    assert made / (len(pairs) - several) >= 0.8


def test_injected_error_is_exactly_one_and_detected(maker, pairs):
    injected = [(row, p) for row, p in pairs if not isinstance(p, TextPairError) and p.on_policy == "chosen"]
    assert injected
    for row, p in injected:
        ref = maker.reference_findings(row["reference_report"])
        chosen = maker.analyse(p.chosen, ref)
        # a correct response, or one that only leaves findings out (recorded with the pair)
        assert all(e.error_type == "missed_finding" and e.kind == "omitted" for e in chosen.errors)
        assert len(chosen.errors) + len(chosen.minor) == len(p.notes.get("omissions_left", []))
        new = [e for e in maker.analyse(p.rejected, ref).errors if e.key not in chosen.keys]
        assert [e.error_type for e in new] == p.error_types


def test_edits_are_minimal(pairs):
    ratios = [word_edit_ratio(p.rejected, p.chosen) for _r, p in pairs if not isinstance(p, TextPairError)]
    # whole statements change (a sentence out, the reference's sentence in), so more words than a
    # one-word flip; still far from a rewrite
    assert statistics.median(ratios) <= 0.3
    # the reference as chosen would rewrite almost everything: our edits are far from that
    refs = [word_edit_ratio(r["generated_report"], r["reference_report"].lower()) for r, _p in pairs]
    assert statistics.median(refs) > 0.8


def test_text_outside_edits_is_identical(pairs):
    for _row, p in pairs:
        if not isinstance(p, TextPairError):
            assert outside_edits_identical(p)


def test_every_differing_token_is_masked(pairs):
    tok, _ = load_tokenizer(None)
    differing = extra = 0
    for _row, p in pairs:
        if isinstance(p, TextPairError):
            continue
        c_ids, r_ids, c_mask, r_mask = token_masks(tok, p.chosen, p.rejected, p.edits)
        assert len(c_ids) == len(c_mask) and len(r_ids) == len(r_mask)
        assert c_ids == tok(p.chosen, add_special_tokens=False).input_ids
        dr, dc = differing_token_positions(r_ids, c_ids)
        assert all(r_mask[k] for k in dr) and all(c_mask[k] for k in dc)
        differing += len(dr) + len(dc)
        extra += sum(1 for k, v in enumerate(c_mask) if v and k not in dc)
        extra += sum(1 for k, v in enumerate(r_mask) if v and k not in dr)
    assert extra / differing <= 0.15


def test_bad_responses_are_reasons_not_crashes(maker):
    ref = "No pneumothorax or pleural effusion."
    for bad, reason in [("", "empty_response"), ("   \n", "empty_response"), ("x" * 200_001, "response_too_long")]:
        with pytest.raises(TextPairError) as e:
            maker.make(bad, ref)
        assert e.value.reason == reason


_SENTENCES = [
    "there is a small left pleural effusion .", "no pneumothorax .", "the lungs are clear .",
    "heart size is normal .", "mild cardiomegaly .", "there is right lower lobe consolidation .",
    "no focal consolidation pneumothorax or pleural effusion .", "stable calcified granuloma .",
    "degenerative changes of the spine .", "possible atelectasis in the left base .",
    "compared to the prior study there is no change .", "no acute cardiopulmonary abnormality .",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(resp=st.lists(st.sampled_from(_SENTENCES), min_size=1, max_size=6),
       ref=st.lists(st.sampled_from(_SENTENCES), min_size=1, max_size=5),
       upper=st.booleans(), seed=st.integers(0, 2**31))
def test_property_outside_edits_identical_and_verified(maker, resp, ref, upper, seed):
    response = " ".join(resp)
    if upper:
        response = ". ".join(s.rstrip(" .").capitalize() for s in resp) + "."
    reference = " ".join(ref)
    try:
        p = maker.make(response, reference, seed=seed)
    except TextPairError as e:
        assert e.reason in ("no_error", "edit_unverified", "edit_not_minimal", "residual_error", "not_fluent",
                            "repetitive_response")
        return
    assert outside_edits_identical(p)
    refind = maker.reference_findings(reference)
    if p.on_policy == "rejected":
        assert p.rejected == response
        assert not maker.analyse(p.chosen, refind).keys - maker.analyse(p.rejected, refind).keys
    else:
        assert p.chosen == response and len(maker.analyse(p.rejected, refind).errors) == 1


def test_a_pair_that_rewrites_too_much_is_rejected(iu_generations):
    from pipeline.config import TextConfig

    strict = TextPairMaker(TextConfig(max_edit_ratio=0.05))
    reasons = set()
    for i, row in enumerate(iu_generations[:40]):
        try:
            p = strict.make(row["generated_report"], row["reference_report"], seed=i)
            if p.on_policy == "rejected":
                assert word_edit_ratio(p.rejected, p.chosen) <= 0.05
        except TextPairError as e:
            reasons.add(e.reason)
    assert "edit_not_minimal" in reasons


def test_label_only_reference_is_judged_within_its_labels(shared):
    """NIH references come from 14 finding labels: a model report's pacemaker is not a false finding
    against them, while a finding the labels cover still is."""
    from pipeline.importers import import_samples

    rec = next(iter(import_samples("nih-reports", shared("nih_cxr14_rexrank_model_reports"))))
    maker = TextPairMaker()
    response = "Left-sided pacemaker in place. There is a large right pneumothorax. No pleural effusion."
    ref = maker.reference_findings("Cardiomegaly. Pleural effusion.")
    scoped = maker.analyse(response, ref, maker.scope_of(rec["meta"]["reference_scope"]))
    unscoped = maker.analyse(response, ref)
    assert ("false_finding", "cardiac_device") in unscoped.keys
    assert ("false_finding", "cardiac_device") not in scoped.keys
    assert ("false_finding", "pneumothorax") in scoped.keys and ("missed_finding", "pleural_effusion") in scoped.keys
