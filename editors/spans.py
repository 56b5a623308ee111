"""Token-level helpers the editors share: where a finding's noun phrase starts, which cue negates it."""

from __future__ import annotations

from editors.base import EditContext

# Words that may stand before a finding inside its noun phrase ("a small left-sided ...").
NP_MODIFIERS = {
    "a", "an", "some", "the", "few", "several", "multiple", "scattered", "focal", "patchy", "streaky",
    "new", "small", "mild", "mildly", "minimal", "trace", "tiny", "moderate", "moderately", "large", "severe",
    "marked", "markedly", "extensive", "massive", "slight", "slightly", "subtle", "left", "right",
    "bilateral", "left-sided", "right-sided", "bibasilar", "bibasal", "biapical", "upper", "lower",
    "middle", "basilar", "apical", "lobe", "lung", "lingular", "retrocardiac", "perihilar", "hilar",
    "xxxx", "linear", "calcified", "chronic", "acute", "old", "diffuse", "dense", "nodular",
    "interstitial", "airspace", "prominent", "borderline", "probable", "possible", "likely", "questionable",
    "pulmonary", "aortic", "thoracic", "spinal", "vascular", "atherosclerotic", "granulomatous", "prior",
    "rounded", "rib", "healed", "ageindeterminate", "cm", "mm", "1", "2", "3", "4", "5", "6", "7", "8", "9",
    "round", "bony", "pleural-based", "cervical", "lumbar", "degenerative", "mediastinal", "cardiac",
    "subsegmental", "apparent", "possibly", "probably", "coarsened", "vague", "bandlike", "definite", "obvious", "significant", "residual", "persistent", "stable",
}
ARTICLES = {"a", "an", "some"}
CONNECTORS = {"and", "or", ",", "nor", "andor", "/"}


def token_index(ctx: EditContext, pos: int) -> int:
    for i, t in enumerate(ctx.tokens):
        if t.start <= pos < t.end:
            return i
    return -1


def np_start(ctx: EditContext, mention_start: int) -> int:
    """Token index of the first modifier of the noun phrase that ends with the mention."""
    i = token_index(ctx, mention_start)
    if i < 0:
        return i
    j = i
    while j > 0 and ctx.tokens[j - 1].lower in NP_MODIFIERS:
        j -= 1
    return j


def sentence_tokens(ctx: EditContext, pos: int) -> tuple[int, int]:
    """(first, last+1) token indices of the sentence holding char `pos`."""
    span = ctx.sentence_of(pos)
    if span is None:
        return (0, len(ctx.tokens))
    idx = [i for i, t in enumerate(ctx.tokens) if t.start >= span[0] and t.end <= span[1]]
    return (idx[0], idx[-1] + 1)


def removal_span(ctx: EditContext, start: int, end: int) -> tuple[int, int]:
    """Widen [start, end) to swallow one neighbouring space so removal leaves no double space."""
    text = ctx.text
    if end < len(text) and text[end] == " ":
        return start, end + 1
    if start > 0 and text[start - 1] == " ":
        return start - 1, end
    return start, end


def sentence_removal_span(ctx: EditContext, sent: tuple[int, int]) -> tuple[int, int]:
    """The sentence plus the whitespace after it (or before it, for the last sentence)."""
    s, e = sent
    text = ctx.text
    j = e
    while j < len(text) and text[j].isspace():
        j += 1
    if j < len(text):
        return s, j
    i = s
    while i > 0 and text[i - 1].isspace():
        i -= 1
    return i, len(text)
