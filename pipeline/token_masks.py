"""Character edits to token masks, with the policy's own tokenizer.

The only place where token indices appear. A token is masked when its character span overlaps text
an edit inserted or replaced (chosen side) or removed or replaced (rejected side); a pure deletion
masks nothing on the side it removed text from. Because a BPE tokenizer can re-split a word next
to an edit ("no pleural" -> "pleural" at the start of a text), tokens that differ between the two
id sequences (aligned with difflib) are masked as well: every differing token is always masked.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from clinical.metrics import differing_token_positions
from schemas.pair import Edit

SHIPPED_TOKENIZER = Path(__file__).resolve().parents[1] / "medpref_data" / "tokenizer"


class ShippedTokenizer:
    """The bundled tokenizer through the `tokenizers` library alone: the same ids and offsets as
    transformers' AutoTokenizer gives for it (a test compares them on real reports), without importing
    transformers, which is most of a default run's start-up on one core (and all of it in a worker pool's
    serial part). Any other tokenizer goes through AutoTokenizer."""

    def __init__(self, folder: Path):
        import json

        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config = json.loads((folder / "tokenizer_config.json").read_text())
        self.image_token = config.get("image_token")
        self.name_or_path = str(folder)

    def __call__(self, text: str, add_special_tokens: bool = False, return_offsets_mapping: bool = False) -> Encoding:
        enc = self._tok.encode(text, add_special_tokens=add_special_tokens)
        out = Encoding(input_ids=list(enc.ids))
        if return_offsets_mapping:
            out["offset_mapping"] = list(enc.offsets)
        return out


class Encoding(dict):
    """Keys readable as attributes too (``enc.input_ids``), as on transformers' BatchEncoding."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e


@lru_cache(maxsize=4)
def _load(path: str):
    if Path(path) == SHIPPED_TOKENIZER:
        return ShippedTokenizer(SHIPPED_TOKENIZER)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ValueError(f"tokenizer {path!r}: cannot load from a local folder ({str(e).splitlines()[0]})") from e


def load_tokenizer(path: str | None):
    """(tokenizer, name for the manifest). None -> the small tokenizer shipped with medpref."""
    if path is None:
        return _load(str(SHIPPED_TOKENIZER)), "medpref_data/tokenizer"
    return _load(str(path)), str(path)


def _mask(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    mask = [0] * len(offsets)
    if not spans:
        return mask
    spans = [(s, e) for s, e in spans if e > s]
    for k, (a, b) in enumerate(offsets):
        for s, e in spans:
            if a < e and s < b:
                mask[k] = 1
                break
    return mask


def _encode(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [(int(a), int(b)) for a, b in enc["offset_mapping"]]
    # byte-level BPE offsets may include the leading space ("Ġword" -> (4, 9) or (3, 9)); trim it so an
    # edit that ends right before a space does not mask the next word
    fixed = []
    for a, b in offsets:
        while a < b and text[a].isspace():
            a += 1
        fixed.append((a, b))
    return list(enc["input_ids"]), fixed


def token_masks(tokenizer, chosen: str, rejected: str, edits: list[Edit]):
    """(chosen_ids, rejected_ids, chosen_mask, rejected_mask) for one pair."""
    c_ids, c_off = _encode(tokenizer, chosen)
    r_ids, r_off = _encode(tokenizer, rejected)
    c_mask = _mask(c_off, [(e.chosen_start, e.chosen_end) for e in edits])
    r_mask = _mask(r_off, [(e.rejected_start, e.rejected_end) for e in edits])
    diff_r, diff_c = differing_token_positions(r_ids, c_ids)
    for k in diff_c:
        c_mask[k] = 1
    for k in diff_r:
        r_mask[k] = 1
    return c_ids, r_ids, c_mask, r_mask

