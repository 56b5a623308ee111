"""The bundled tokenizer is read with the `tokenizers` library alone (no transformers import at start-up);
it must give exactly the ids and offsets transformers' AutoTokenizer gives for the same folder."""

from __future__ import annotations

import sys

from pipeline.token_masks import SHIPPED_TOKENIZER, ShippedTokenizer, load_tokenizer


def test_shipped_tokenizer_equals_autotokenizer_on_real_reports(iu_generations):
    from transformers import AutoTokenizer

    ours = ShippedTokenizer(SHIPPED_TOKENIZER)
    theirs = AutoTokenizer.from_pretrained(str(SHIPPED_TOKENIZER), local_files_only=True)
    texts = [t for r in iu_generations for t in (r["generated_report"], r["reference_report"])]
    texts += ["<image>\n" + texts[0].upper(), "Pleural effusion:  right,\tsmall (2.5 cm) ; xxxx ."]
    assert len(texts) > 20
    for text in texts:
        for special in (False, True):
            a = ours(text, add_special_tokens=special, return_offsets_mapping=True)
            b = theirs(text, add_special_tokens=special, return_offsets_mapping=True)
            assert a["input_ids"] == list(b["input_ids"]), text
            assert [tuple(o) for o in a["offset_mapping"]] == [tuple(o) for o in b["offset_mapping"]], text
    assert ours.image_token == theirs.image_token == "<image>"


def test_the_default_run_does_not_import_transformers():
    import subprocess

    code = ("import sys; from pipeline.token_masks import load_tokenizer; tok, name = load_tokenizer(None); "
            "tok('no pleural effusion .', return_offsets_mapping=True); print('transformers' in sys.modules, name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "medpref_data/tokenizer"]
    tok, _ = load_tokenizer(None)
    assert isinstance(tok, ShippedTokenizer)
