"""Pair metrics shared by the run summary, the token masks, `build-pairs eval` and the HTML report."""

from __future__ import annotations


def word_edit_ratio(a: str, b: str) -> float:
    """Word-level Levenshtein distance over the longer side (0 = same, 1 = nothing shared), fast on
    minimal edits: a common prefix and
    suffix of words never changes a Levenshtein distance, so only the differing middle is aligned."""
    x, y = a.split(), b.split()
    longest = max(len(x), len(y))
    if not longest:
        return 0.0
    start = 0
    while start < len(x) and start < len(y) and x[start] == y[start]:
        start += 1
    end_x, end_y = len(x), len(y)
    while end_x > start and end_y > start and x[end_x - 1] == y[end_y - 1]:
        end_x, end_y = end_x - 1, end_y - 1
    x, y = x[start:end_x], y[start:end_y]
    prev = list(range(len(y) + 1))
    for i in range(1, len(x) + 1):
        cur = [i] + [0] * len(y)
        for j in range(1, len(y) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] != y[j - 1]))
        prev = cur
    return prev[-1] / longest


def differing_token_positions(a: list[int], b: list[int]) -> tuple[set[int], set[int]]:
    """Positions of tokens outside the longest common prefix/suffix-aligned matching blocks
    (difflib), i.e. the tokens that differ between the two id sequences."""
    import difflib

    sm = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    same_a, same_b = set(), set()
    for blk in sm.get_matching_blocks():
        same_a.update(range(blk.a, blk.a + blk.size))
        same_b.update(range(blk.b, blk.b + blk.size))
    return set(range(len(a))) - same_a, set(range(len(b))) - same_b
