"""The word-level edit ratio every report of medpref prints, against a plain Levenshtein."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from clinical.metrics import word_edit_ratio


def plain_levenshtein(x: list[str], y: list[str]) -> int:
    d = [[i + j if i * j == 0 else 0 for j in range(len(y) + 1)] for i in range(len(x) + 1)]
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (x[i - 1] != y[j - 1]))
    return d[-1][-1]


def test_hand_computed():
    # one word replaced ("small" -> "no") and one deleted ("left") out of 6 words
    assert word_edit_ratio("there is a small left effusion", "there is a no effusion") == 2 / 6
    assert word_edit_ratio("", "") == 0.0
    assert word_edit_ratio("a b", "c d") == 1.0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["no", "left", "right", "small", "effusion", "."]), max_size=12),
       st.lists(st.sampled_from(["no", "left", "right", "small", "effusion", "."]), max_size=12))
def test_matches_plain_levenshtein(a, b):
    expect = plain_levenshtein(a, b) / max(len(a), len(b)) if (a or b) else 0.0
    assert word_edit_ratio(" ".join(a), " ".join(b)) == expect
