"""Abbreviations defined inside a report, found with scispacy's AbbreviationDetector.

Only called when the text has a parenthesis (the detector finds "long form (SF)" definitions), so
it costs nothing on the common case. Fixed clinical abbreviations (PTX, CHF, ETT) are lexicon phrases.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _nlp():
    import spacy
    from scispacy.abbreviation import AbbreviationDetector  # noqa: F401  (registers the factory)
    from scispacy.custom_tokenizer import combined_rule_tokenizer

    nlp = spacy.blank("en")
    nlp.tokenizer = combined_rule_tokenizer(nlp)
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("abbreviation_detector")
    return nlp


def abbreviation_spans(text: str) -> list[tuple[tuple[int, int], list[tuple[int, int]]]]:
    """[((long_start, long_end), [(short_start, short_end), ...]), ...] as character offsets."""
    doc = _nlp()(text)
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for abrv in doc._.abbreviations:
        lf = abrv._.long_form
        groups.setdefault((lf.start_char, lf.end_char), []).append((abrv.start_char, abrv.end_char))
    return list(groups.items())
