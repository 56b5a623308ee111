"""The ``radgraph`` extractor: offsets conversion on real RadGraph output, alignment on real reports, and
radgraph's real loading + inference code end to end on a tiny random-weight checkpoint built here."""

from __future__ import annotations

import copy
import json
import os
import random
import re
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

from data_paths import SHARED  # noqa: E402 - the full shared data, else the committed excerpts

from clinical.extract.radgraph_adapter import (  # noqa: E402
    MODEL_TYPES,
    RadGraphExtractor,
    align_tokens,
    parse_label,
    radgraph_to_extraction,
    radgraph_view,
)
from schemas.extraction import Extraction, Relation  # noqa: E402

README_EXAMPLES = SHARED / "radgraph_readme_examples" / "examples.json"
REPORTS = SHARED / "iu_xray_openi_reports" / "reports.jsonl"


def _squash(s: str) -> str:
    return "".join(s.split()).lower()


def _assert_valid(extraction: Extraction, text: str) -> None:
    """The Extraction contract: exact text, half-open offsets, known kinds, relations between kept ids."""
    assert extraction.text == text
    ids = [e.id for e in extraction.entities]
    assert len(ids) == len(set(ids))
    for e in extraction.entities:
        assert 0 <= e.start < e.end <= len(text)
        assert e.text == text[e.start:e.end]
        assert e.text == e.text.strip()
        assert e.kind in ("Anatomy", "Observation") and e.certainty in ("present", "absent", "uncertain")
        assert e.id.startswith("rg")
    for r in extraction.relations:
        assert r.source in ids and r.target in ids
        assert r.kind in ("modify", "located_at", "suggestive_of")


# ---------------------------------------------------------------------------------------- conversion


@pytest.fixture(scope="module")
def readme() -> dict:
    if not README_EXAMPLES.exists():
        pytest.skip(f"{README_EXAMPLES} is absent")
    return json.loads(README_EXAMPLES.read_text(encoding="utf-8"))["entity_relation_example"]


def test_readme_output_becomes_character_offsets_on_the_input(readme):
    text, annotation = readme["input"][0], readme["output"]["0"]
    extraction = radgraph_to_extraction(text, annotation)
    _assert_valid(extraction, text)

    by_id = extraction.by_id()
    assert set(by_id) == {f"rg{rid}" for rid in annotation["entities"]}
    for rid, raw in annotation["entities"].items():
        entity = by_id[f"rg{rid}"]
        assert _squash(entity.text) == _squash(raw["tokens"])
    # "No evidence of pneumothorax following chest tube removal."
    assert (by_id["rg1"].start, by_id["rg1"].end) == (text.index("pneumothorax"), text.index("pneumothorax") + 12)
    assert (by_id["rg1"].kind, by_id["rg1"].certainty) == ("Observation", "absent")
    assert (by_id["rg2"].text, by_id["rg2"].kind, by_id["rg2"].certainty) == ("chest", "Anatomy", "present")
    assert (by_id["rg3"].text, by_id["rg3"].kind, by_id["rg3"].certainty) == ("tube", "Observation", "present")
    assert by_id["rg1"].label == annotation["entities"]["1"]["label"]
    assert extraction.relations == [Relation("located_at", "rg3", "rg2")]  # the tube is located at the chest


def test_alignment_survives_case_whitespace_and_split_punctuation(readme):
    annotation = copy.deepcopy(readme["output"]["0"])
    tokens = annotation["text"].split()
    five, six = tokens.index("chest"), tokens.index("tube")
    annotation["entities"]["4"] = {  # a two-token entity over RadGraph's own tokens, "chest tube"
        "tokens": " ".join(tokens[five:six + 1]), "label": "OBS-DP", "start_ix": five, "end_ix": six,
        "relations": [["located_at", "2"]],
    }
    mutated = "  NO evidence of\tPneumothorax following CHEST \n  tube removal. "
    extraction = radgraph_to_extraction(mutated, annotation)
    _assert_valid(extraction, mutated)
    by_id = extraction.by_id()
    assert by_id["rg1"].text == "Pneumothorax" and by_id["rg1"].start == mutated.index("Pneumothorax")
    assert by_id["rg2"].text == "CHEST"
    assert by_id["rg4"].text == "CHEST \n  tube" and by_id["rg4"].start == mutated.index("CHEST")
    assert Relation("located_at", "rg4", "rg2") in extraction.relations


@pytest.fixture(scope="module")
def real_texts() -> list[str]:
    if not REPORTS.exists():
        pytest.skip(f"{REPORTS} is absent")
    texts = []
    with REPORTS.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            texts += [record[k] for k in ("indication", "findings", "impression") if record.get(k)]
            if len(texts) >= 600:
                break
    return texts


def _assert_aligned(original: str, tokens: list[str], seen_as: str | None = None) -> None:
    """Every token found, in order, where ``seen_as`` (the text as RadGraph read it) shows it."""
    spans = align_tokens(original, tokens)
    assert all(span is not None for span in spans), (original, tokens)
    assert [(seen_as or original)[s:e].lower() for s, e in spans] == [t.lower() for t in tokens]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


@pytest.mark.parametrize("model_type", ["radgraph", "radgraph-xl"])
def test_every_radgraph_token_of_real_reports_aligns_to_changed_strings(real_texts, model_type):
    from radgraph.utils import preprocess_reports  # RadGraph's own tokenisation

    def radgraph_tokens(text: str) -> list[str]:
        return preprocess_reports([text], model_type)[0]["sentences"][0]

    rng = random.Random(7)
    for text in real_texts:
        tokens = radgraph_tokens(text)
        _assert_aligned(text, tokens)
        # The caller's string differs in case and whitespace from the one RadGraph annotated.
        mutated = "".join(c.swapcase() if rng.random() < 0.3 and len(c.swapcase()) == 1 else c for c in text)
        _assert_aligned(re.sub(r"\s", lambda m: rng.choice([" ", "  ", "\n", " \t "]), mutated), tokens)
        # RadGraph-XL rewrites literal \n, \f, \u2122 (to spaces) and \" (to ``) found in some exports.
        exported = re.sub(r"\s", lambda m: rng.choice([" ", "\\n", " \\f ", '\\"', "\\u2122", "\n"]), text)
        seen_as = exported if model_type == "radgraph" else radgraph_view(exported)
        _assert_aligned(exported, radgraph_tokens(exported), seen_as)
        # The caller's string has a word the annotated one lacks: the diff path.
        words = text.split()
        if len(words) > 2:
            cut = rng.randrange(len(words))
            _assert_aligned(text, radgraph_tokens(" ".join(words[:cut] + words[cut + 1:])))


def test_backslash_quote_aligns_to_radgraphs_backticks():
    from radgraph.utils import radgraph_xl_preprocess_report

    text = 'Tube in place.\\nNo \\"new\\" effusion.'  # literal backslash-n and backslash-quote
    tokens = radgraph_xl_preprocess_report(text).split()
    no, tick, new = tokens.index("No"), tokens.index("``"), tokens.index("new")
    assert tokens[no:new + 2] == ["No", "``", "new", "``"]  # radgraph read \" as two backticks

    def entity(first, last, label, relations=()):
        joined = " ".join(tokens[first:last + 1])
        return {"tokens": joined, "label": label, "start_ix": first, "end_ix": last, "relations": list(relations)}

    annotation = {"text": " ".join(tokens), "entities": {
        "1": entity(tick, tick, "Observation::definitely present"),
        "2": entity(new, new, "Observation::definitely present"),
        "3": entity(no, new + 1, "OBS-DA", [["modify", "2"]]),
    }}
    extraction = radgraph_to_extraction(text, annotation)
    _assert_valid(extraction, text)
    by_id = extraction.by_id()
    assert (by_id["rg1"].start, by_id["rg1"].text) == (text.index('\\"'), '\\"')
    assert (by_id["rg2"].start, by_id["rg2"].text) == (text.index("new"), "new")
    assert by_id["rg3"].text == 'No \\"new\\"'
    assert extraction.relations == [Relation("modify", "rg3", "rg2")]


def test_entities_missing_from_the_callers_string_are_dropped_with_their_relations():
    annotated = "No pleural effusion or pneumothorax ."
    tokens = annotated.split()
    annotation = {"text": annotated, "entities": {
        "1": {"tokens": "pleural", "label": "Anatomy::definitely present", "start_ix": 1, "end_ix": 1, "relations": []},
        "2": {"tokens": "effusion", "label": "Observation::definitely absent", "start_ix": 2, "end_ix": 2,
              "relations": [["located_at", "1"]]},
        "3": {"tokens": "pneumothorax", "label": "Observation::definitely absent", "start_ix": 4, "end_ix": 4,
              "relations": [["located_at", "1"]]},
    }}
    assert tokens[4] == "pneumothorax"
    text = "No pleural effusions."
    extraction = radgraph_to_extraction(text, annotation)
    _assert_valid(extraction, text)
    assert [(e.id, e.text) for e in extraction.entities] == [("rg1", "pleural"), ("rg2", "effusion")]
    assert extraction.relations == [Relation("located_at", "rg2", "rg1")]


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Observation::definitely absent", ("Observation", "absent")),
        ("Observation::absent", ("Observation", "absent")),
        ("Observation::definitely present", ("Observation", "present")),
        ("Observation::present", ("Observation", "present")),
        ("Observation::uncertain", ("Observation", "uncertain")),
        ("Anatomy::definitely present", ("Anatomy", "present")),
        ("Observation::measurement::definitely absent", ("Observation", "absent")),
        ("OBS-DA", ("Observation", "absent")),
        ("OBS-DP", ("Observation", "present")),
        ("OBS-U", ("Observation", "uncertain")),
        ("ANAT-DP", ("Anatomy", "present")),
    ],
)
def test_both_label_spellings(label, expected):
    assert parse_label(label) == expected


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"start_ix": 2, "end_ix": 99}, "entity 1: fields 'start_ix'/'end_ix'"),
        ({"tokens": "pleural"}, "entity 1: field 'tokens'"),
        ({"label": "Device::present"}, "entity 1: field 'label'"),
        ({"relations": [["causes", "2"]]}, "entity 1: relation type 'causes'"),
        ({"relations": [["modify", "9"]]}, "entity 1: field 'relations' targets unknown entity '9'"),
    ],
)
def test_malformed_annotation_fails_naming_entity_and_field(readme, change, message):
    annotation = copy.deepcopy(readme["output"]["0"])
    annotation["entities"]["1"].update(change)
    with pytest.raises(ValueError, match=re.escape(message)):
        radgraph_to_extraction(readme["input"][0], annotation)


# ---------------------------------------------------------------------------------------- loading errors


def test_missing_weights_fail_fast_in_one_line_and_create_nothing(tmp_path):
    (tmp_path / "radgraph-xl").mkdir()
    (tmp_path / "radgraph-xl" / "config.json").write_text("{}")
    started = time.perf_counter()
    with pytest.raises(FileNotFoundError) as caught:
        RadGraphExtractor(model_type="radgraph-xl", model_cache_dir=tmp_path)
    message = str(caught.value)
    assert time.perf_counter() - started < 1.0
    assert "\n" not in message
    assert str(tmp_path / "radgraph-xl") in message
    assert all(name in message for name in ("config.json", "vocabulary/", "weights.th"))
    assert "lacks vocabulary/, weights.th" in message

    with pytest.raises(FileNotFoundError, match="lacks config.json, vocabulary/, weights.th"):
        RadGraphExtractor(model_type="radgraph", model_cache_dir=tmp_path)
    assert not (tmp_path / "radgraph").exists()  # radgraph itself would have made it and tried to download
    with pytest.raises(FileNotFoundError, match="needs model_cache_dir"):
        RadGraphExtractor()
    with pytest.raises(ValueError, match="valid: " + ", ".join(MODEL_TYPES)):
        RadGraphExtractor(model_type="radgraph-2", model_cache_dir=tmp_path)


def test_encoder_absent_locally_fails_fast(tmp_path):
    model_dir = tmp_path / "radgraph-xl"
    (model_dir / "vocabulary").mkdir(parents=True)
    (model_dir / "weights.th").write_bytes(b"")
    bert = {"model_name": "medpref-test/no-such-encoder", "max_length": 512}
    config = {"dataset_reader": {"token_indexers": {"bert": bert}}, "model": {"embedder": {"token_embedders": {"bert": bert}}}}
    (model_dir / "config.json").write_text(json.dumps(config))
    started = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="names the encoder 'medpref-test/no-such-encoder'"):
        RadGraphExtractor(model_type="radgraph-xl", model_cache_dir=tmp_path)
    assert time.perf_counter() - started < 2.0


# ---------------------------------------------------------------------------------------- end to end


def _several_segments(texts: list[str]) -> str:
    """A real report longer than the tiny encoder's 48-wordpiece segments: exercises the folding path."""
    return next(t for t in texts if 40 <= len(t.split()) <= 50)


@pytest.fixture(scope="session")
def tiny_radgraph(tmp_path_factory) -> Path:
    if not REPORTS.exists():
        pytest.skip(f"{REPORTS} is absent")
    from radgraph_tiny import build_tiny_radgraph, report_texts

    return build_tiny_radgraph(tmp_path_factory.mktemp("radgraph"), report_texts(SHARED))


def test_real_loading_and_inference_give_valid_extractions(tiny_radgraph, real_texts):
    extractor = RadGraphExtractor(model_type="radgraph-xl", model_cache_dir=tiny_radgraph)
    assert extractor.name == "radgraph"
    texts = real_texts[:4] + [_several_segments(real_texts), "", "   \n"]
    annotations = extractor.annotate_batch(texts)
    extractions = extractor.extract_batch(texts)
    assert len(extractions) == len(texts)
    for text, annotation, extraction in zip(texts, annotations, extractions, strict=True):
        _assert_valid(extraction, text)
        if not text.strip():
            assert annotation is None and extraction.entities == [] and extraction.relations == []
            continue
        assert _squash(annotation["text"]) == _squash(text)
        by_id = extraction.by_id()
        for rid, raw in annotation["entities"].items():
            assert _squash(by_id[f"rg{rid}"].text) == _squash(raw["tokens"])
    assert sum(len(x.entities) for x in extractions) > 0  # a random model still labels spans
    assert sum(len(x.relations) for x in extractions) > 0
    assert extractor.extract(texts[1]) == extractions[1]  # one at a time == batched


def test_weights_come_from_weights_th(tiny_radgraph, real_texts):
    # Two loads share nothing but the files; random initialisation alone would make them disagree.
    first = RadGraphExtractor(model_type="radgraph-xl", model_cache_dir=tiny_radgraph)
    second = RadGraphExtractor(model_type="radgraph-xl", model_cache_dir=tiny_radgraph)
    report = _several_segments(real_texts)
    extraction = first.extract(report)
    assert extraction == second.extract(report)
    _assert_valid(extraction, report)


def test_compat_shim_restores_the_two_tokenizer_methods(tiny_radgraph):
    from radgraph.allennlp.common import cached_transformers

    from clinical.extract import radgraph_compat

    radgraph_compat.install()
    wrapped = cached_transformers.get_tokenizer
    radgraph_compat.install()
    assert cached_transformers.get_tokenizer is wrapped  # idempotent

    tokenizer = cached_transformers.get_tokenizer(str(tiny_radgraph / "encoder"), use_fast=True)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert tokenizer.build_inputs_with_special_tokens([11, 12]) == [cls, 11, 12, sep]
    assert tokenizer.build_inputs_with_special_tokens([11], [12, 13]) == [cls, 11, sep, 12, 13, sep]
    encoded = tokenizer.encode_plus("pleural effusion", add_special_tokens=False)
    assert encoded["input_ids"] == tokenizer("pleural effusion", add_special_tokens=False)["input_ids"]
