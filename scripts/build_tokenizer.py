"""Build the small tokenizer that ships with medpref (medpref_data/tokenizer).

Why: `build-pairs run` with no model must still write token ids and masks, offline, and the tiny
test model must share those ids. A byte-level BPE trained on local IU X-ray report text gives a
tokenizer with real offset mappings (needed to map character edits to tokens) and no download.
Run: `.venv/bin/python scripts/build_tokenizer.py [SHARED_DATA_DIR]`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "medpref_data" / "tokenizer"
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['content'] is string %}{{ '<|' + m['role'] + '|> ' + m['content'] + '\\n' }}"
    "{% else %}{{ '<|' + m['role'] + '|> ' }}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<image>' }}{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{{ '\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|> ' }}{% endif %}"
)


def report_texts(data: Path):
    for line in (data / "iu_xray_openi_reports" / "reports.jsonl").open():
        r = json.loads(line)
        text = " ".join(x for x in (r.get("findings"), r.get("impression"), r.get("indication")) if x)
        yield text
        yield text.lower().replace(".", " .").replace(",", " ,")
    for line in (data / "vqa_rad" / "qa.jsonl").open():
        r = json.loads(line)
        yield f"{r.get('question', '')} {r.get('answer', '')}"


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=4096,
        min_frequency=2,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(report_texts(data), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 2048
    OUT.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(OUT)
    print(f"wrote {OUT} (vocab {len(fast)})")


if __name__ == "__main__":
    main()
