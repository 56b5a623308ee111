"""Editors by name, chosen in the config (`text.editors`)."""

from __future__ import annotations

from editors.base import Editor
from editors.comparison import DeleteComparison
from editors.deletion import DeleteFinding
from editors.insertion import InsertFinding
from editors.swap import SwapLocation, SwapSeverity

EDITORS: dict[str, type] = {
    "deletion": DeleteFinding,
    "insertion": InsertFinding,
    "location": SwapLocation,
    "severity": SwapSeverity,
    "comparison": DeleteComparison,
}
# Tried in this order for each error; the first verified proposal wins.
DEFAULT_EDITORS = ["location", "severity", "deletion", "insertion", "comparison"]


def register_editor(name: str, cls: type) -> None:
    EDITORS[name] = cls


def _llm(config=None):
    from editors.llm import LLMEditor

    return LLMEditor(config)


EDITORS["llm"] = _llm


def get_editor(name: str, config=None) -> Editor:
    """An editor by name; editors that need settings (``llm``) read them from the text config."""
    try:
        factory = EDITORS[name]
    except KeyError:
        raise ValueError(f"unknown editor {name!r}; valid editors: {', '.join(sorted(EDITORS))}") from None
    return factory(config) if factory is _llm else factory()
