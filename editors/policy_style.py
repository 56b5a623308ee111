"""The on-policy style test: an edited sentence must be about as likely under the policy as its own.

Why: FiRe-MPO trains on pairs whose chosen side is an edit of the policy's own response. If the
edited sentence is one the policy would never write (another radiologist's phrasing, a broken
splice), the chosen side is off-policy and the pair teaches style instead of content. With a
policy model configured (`build-pairs run --model DIR`), every changed sentence is scored by that
model in the context of the response; an edit whose mean token log-probability falls more than
`margin` nats below the mean of the response's untouched sentences is refused, with its numbers.

The model is read from a local folder only: a causal LM, or the language side of an
image-text-to-text model (scored on the text alone, as the structural checker reads it).
"""

from __future__ import annotations

import math
from pathlib import Path

from clinical.fluency import split_sentences


class PolicyStyle:
    def __init__(self, model_dir: str | Path, margin: float = 2.0, device: str = "cpu"):
        import torch
        from transformers import AutoTokenizer

        self.torch = torch
        self.margin = margin
        path = str(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = _load_lm(path).to(device).eval()
        self.device = device

    def sentence_logprobs(self, text: str) -> list[tuple[tuple[int, int], float]]:
        """(sentence span, mean log-probability per token) for each sentence of `text`, in context."""
        torch = self.torch
        enc = self.tokenizer(text, return_offsets_mapping=True, add_special_tokens=True, return_tensors="pt")
        ids = enc["input_ids"].to(self.device)
        # image placeholders in a text-only forward would ask for image features: score them as padding
        for key in ("image_token_id", "image_token_index", "video_token_id"):
            tid = getattr(self.model.config, key, None)
            if isinstance(tid, int) and tid >= 0:
                ids = ids.masked_fill(ids == tid, self.tokenizer.pad_token_id or 0)
        offsets = enc["offset_mapping"][0].tolist()
        if ids.shape[1] < 2:
            return []  # nothing to score in context
        with torch.no_grad():
            logits = self.model(input_ids=ids).logits.float()
        logp = torch.log_softmax(logits[0, :-1], dim=-1).gather(1, ids[0, 1:, None])[:, 0].tolist()
        out = []
        for s, e in split_sentences(text):
            vals = [logp[k - 1] for k in range(1, len(offsets)) if offsets[k][1] > s and offsets[k][0] < e
                    and offsets[k][1] > offsets[k][0]]
            if vals:
                out.append(((s, e), sum(vals) / len(vals)))
        return out

    def problems(self, before: str, after: str) -> list[str]:
        """Changed sentences of `after` much less likely than its untouched ones ('sentence: numbers')."""
        old = {" ".join(before[s:e].lower().split()) for s, e in split_sentences(before)}
        scored = self.sentence_logprobs(after)
        own = [lp for (s, e), lp in scored if " ".join(after[s:e].lower().split()) in old]
        new = [((s, e), lp) for (s, e), lp in scored if " ".join(after[s:e].lower().split()) not in old]
        if not own or not new:
            return []
        base = sum(own) / len(own)
        return [f"{after[s:e].strip()!r}: {lp:.2f} nats/token vs {base:.2f} for the response's own sentences"
                for (s, e), lp in new if math.isfinite(lp) and lp < base - self.margin]


def _load_lm(path: str):
    """A causal LM from the folder, or the whole image-text-to-text model (its forward takes text alone)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    cfg = AutoConfig.from_pretrained(path)
    if getattr(cfg, "vision_config", None) is not None:
        return AutoModelForImageTextToText.from_pretrained(path)
    return AutoModelForCausalLM.from_pretrained(path)
