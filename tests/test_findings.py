"""The findings layer is extractor-agnostic: real RadGraph output and the rule extractor agree."""

from __future__ import annotations

import json

from clinical.extract.lexicon import load_lexicon
from clinical.extract.radgraph_adapter import radgraph_to_extraction
from clinical.extract.rules import RuleExtractor
from clinical.findings import findings_from_extraction


def test_real_radgraph_output_becomes_findings(shared):
    ex = json.loads(shared("radgraph_readme_examples", "examples.json").read_text())["entity_relation_example"]
    text = ex["input"][0]
    extraction = radgraph_to_extraction(text, ex["output"]["0"])
    found = {(f.concept, f.certainty) for f in findings_from_extraction(extraction, load_lexicon()).findings}
    assert ("pneumothorax", "absent") in found
    assert ("tube_or_line", "present") in found
    # the rule extractor finds the same concepts; on the tube it reads the removal as absence, where
    # RadGraph's annotation scheme tags the device itself as present
    rules = RuleExtractor()
    ours = {(f.concept, f.certainty) for f in findings_from_extraction(rules.extract(text), rules.lexicon).findings}
    assert {c for c, _ in ours} == {c for c, _ in found}
    assert ("pneumothorax", "absent") in ours


def test_chexpert_phrase_folder_as_lexicon(shared):
    folder = shared("chexpert_labeler_lexicon", "phrases")
    lx = load_lexicon(str(folder))
    rules = RuleExtractor(lexicon=lx)
    # "pleural_other" exists only in the CheXpert folder
    assert "pleural_other" in lx.group
    fs = findings_from_extraction(rules.extract("No pneumothorax. Small right effusion."), lx).findings
    assert {(f.concept, f.certainty) for f in fs} >= {("pneumothorax", "absent"), ("pleural_effusion", "present")}
