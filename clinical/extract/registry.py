"""Extractors by name (`text.extractor` in the config)."""

from __future__ import annotations

from typing import Any


def _rules(**kw: Any):
    from clinical.extract.rules import RuleExtractor

    return RuleExtractor(lexicon=kw.get("lexicon"))


def _radgraph(**kw: Any):
    from clinical.extract.lexicon import load_lexicon
    from clinical.extract.radgraph_adapter import RadGraphExtractor

    ex = RadGraphExtractor(**{k: v for k, v in kw.items() if k not in ("lexicon",)})
    ex.lexicon = load_lexicon(kw.get("lexicon"))
    return ex


EXTRACTORS = {"rules": _rules, "radgraph": _radgraph}


def get_extractor(name: str, **kwargs: Any):
    try:
        factory = EXTRACTORS[name]
    except KeyError:
        raise ValueError(f"unknown extractor {name!r}; valid extractors: {', '.join(sorted(EXTRACTORS))}") from None
    return factory(**kwargs)
