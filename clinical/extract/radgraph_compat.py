"""Let radgraph 0.1.18's vendored allennlp run on transformers 5.

transformers 5 dropped ``encode_plus`` and ``build_inputs_with_special_tokens`` from its tokenizers, and the
allennlp copy inside radgraph still calls both: ``encode_plus`` to reverse-engineer the special tokens and
to split each word into wordpieces, ``build_inputs_with_special_tokens`` to fold inputs longer than
``max_length`` into segments. :func:`install` wraps radgraph's tokenizer cache so every tokenizer it hands
out gets the two methods back, written on the transformers-5 ``__call__`` API. Only radgraph's tokenizers
are touched (no transformers class is patched), and a tokenizer that still has a method keeps its own.
"""

from __future__ import annotations

import functools
import types
from typing import Any

_MARK = "_medpref_radgraph_compat"
_DUMMY_PAIRS = (("a", "b"), ("1", "2"))  # two one-piece words that differ; digits when letters are unknown

Layout = tuple[list[int], list[int], list[int]]  # ids before the first text, between the two, after the last


def install() -> None:
    """Wrap ``radgraph.allennlp.common.cached_transformers.get_tokenizer`` once (idempotent)."""
    from radgraph.allennlp.common import cached_transformers

    original = cached_transformers.get_tokenizer
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def get_tokenizer(model_name: str, **kwargs: Any):
        return patch_tokenizer(original(model_name, **kwargs))

    setattr(get_tokenizer, _MARK, True)
    cached_transformers.get_tokenizer = get_tokenizer


def patch_tokenizer(tokenizer: Any) -> Any:
    """Give one tokenizer instance the two transformers-4 methods it lacks; return it."""
    if not hasattr(tokenizer, "encode_plus"):
        tokenizer.encode_plus = types.MethodType(_encode_plus, tokenizer)
    if not hasattr(tokenizer, "build_inputs_with_special_tokens"):
        layouts: dict[bool, Layout] = {}

        def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None):
            pair = token_ids_1 is not None
            if pair not in layouts:
                layouts[pair] = special_token_layout(self, pair)
            start, mid, end = layouts[pair]
            if not pair:
                return start + list(token_ids_0) + end
            return start + list(token_ids_0) + mid + list(token_ids_1) + end

        tokenizer.build_inputs_with_special_tokens = types.MethodType(build_inputs_with_special_tokens, tokenizer)
    return tokenizer


def _encode_plus(self, text, text_pair=None, **kwargs):
    """transformers 4's ``encode_plus`` was ``__call__`` for one example; v5 only has ``__call__``."""
    return self(text, text_pair=text_pair, **kwargs)


def special_token_layout(tokenizer: Any, pair: bool) -> Layout:
    """Read where the tokenizer puts its special tokens by encoding dummy words with and without them."""
    for word_a, word_b in _DUMMY_PAIRS:
        ids_a = tokenizer(word_a, add_special_tokens=False)["input_ids"]
        ids_b = tokenizer(word_b, add_special_tokens=False)["input_ids"]
        if not ids_a or not ids_b or ids_a == ids_b:
            continue
        full = tokenizer(word_a, text_pair=word_b if pair else None, add_special_tokens=True)["input_ids"]
        i = _find(full, ids_a, 0)
        if i < 0:
            continue
        after_a = i + len(ids_a)
        if not pair:
            return full[:i], [], full[after_a:]
        j = _find(full, ids_b, after_a)
        if j >= 0:
            return full[:i], full[after_a:j], full[j + len(ids_b):]
    raise RuntimeError(f"cannot infer the special-token layout of tokenizer {type(tokenizer).__name__}")


def _find(haystack: list[int], needle: list[int], start: int) -> int:
    for i in range(start, len(haystack) - len(needle) + 1):
        if haystack[i:i + len(needle)] == needle:
            return i
    return -1
