"""Build a tiny random-weight RadGraph checkpoint in the exact layout radgraph 0.1.18 loads.

The real weights (``StanfordAIMI/RRG_scorers``) cannot be fetched here, so the tests build this instead and
run radgraph's real loading and inference code on it: ``<root>/<model_type>/config.json`` (a DyGIE config),
``vocabulary/`` (``<model_type>__ner_labels``, ``<model_type>__relation_labels``) and ``weights.th`` (a
state dict that must load with ``strict=True``), plus ``<root>/encoder/``: a tiny BERT config and a WordPiece
tokenizer trained on local report text, which config.json names where the real one names a hub model.
Predictions are random; the schema and every code path are real.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

NER_LABELS = (
    "Anatomy::definitely present",
    "Observation::definitely present",
    "Observation::definitely absent",
    "Observation::uncertain",
)
RELATION_LABELS = ("located_at", "modify", "suggestive_of")


def report_texts(data_dir: Path, limit: int = 400) -> list[str]:
    """Findings and impressions of the first ``limit`` IU X-Ray reports in ``data_dir``."""
    texts: list[str] = []
    with (data_dir / "iu_xray_openi_reports" / "reports.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            texts += [record[key] for key in ("findings", "impression") if record.get(key)]
            if len(texts) >= limit:
                break
    return texts[:limit]


def build_tiny_radgraph(
    root: Path,
    texts: Iterable[str],
    model_type: str = "radgraph-xl",
    *,
    max_length: int = 48,
    seed: int = 0,
) -> Path:
    """Write the checkpoint under ``root`` and return ``root`` (the ``model_cache_dir``).

    ``max_length`` is the wordpiece segment length; it is small so that ordinary reports are folded into
    several segments, the path that calls ``build_inputs_with_special_tokens``.
    """
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertTokenizer

    encoder = root / "encoder"
    model_dir = root / model_type
    vocab_dir = model_dir / "vocabulary"
    vocab_dir.mkdir(parents=True, exist_ok=True)

    # Encoder: WordPiece vocabulary learnt from the reports, tiny BERT config (its weights live in weights.th).
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials, show_progress=False)
    wordpiece.train_from_iterator(list(texts), trainer)
    BertTokenizer(vocab=wordpiece.get_vocab(), do_lower_case=True).save_pretrained(encoder)
    BertConfig(
        vocab_size=wordpiece.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max(64, max_length),
    ).save_pretrained(encoder)

    # Label vocabularies, as allennlp saves them: label namespaces are unpadded; NER's null label "" is first.
    (vocab_dir / "non_padded_namespaces.txt").write_text("*tags\n*labels\n", encoding="utf-8")
    (vocab_dir / f"{model_type}__ner_labels.txt").write_text("\n".join(["", *NER_LABELS]) + "\n", encoding="utf-8")
    (vocab_dir / f"{model_type}__relation_labels.txt").write_text("\n".join(RELATION_LABELS) + "\n", encoding="utf-8")

    bert = {"type": "pretrained_transformer_mismatched", "model_name": str(encoder), "max_length": max_length}
    config = {
        "dataset_reader": {"type": "dygie", "token_indexers": {"bert": bert}, "max_span_width": 8},
        "model": {
            "type": "dygie",
            "embedder": {"token_embedders": {"bert": bert}},
            "initializer": {"regexes": [["_span_width_embedding.weight", {"type": "xavier_normal"}]]},
            "module_initializer": {"regexes": [[".*weight", {"type": "xavier_normal"}]]},
            "feature_size": 8,
            "max_span_width": 8,
            "target_task": "relation",
            "feedforward_params": {"num_layers": 2, "hidden_dims": 16, "dropout": 0.4},
            "loss_weights": {"ner": 1.0, "relation": 1.0, "coref": 0.0, "events": 0.0},
            "modules": {
                "coref": {"spans_per_word": 0.3, "max_antecedents": 100, "coref_prop": 0},
                "ner": {},
                "relation": {"spans_per_word": 0.5},
                "events": {
                    "trigger_spans_per_word": 0.3,
                    "argument_spans_per_word": 0.8,
                    "loss_weights": {"trigger": 0.2, "arguments": 1.0},
                },
            },
        },
    }
    (model_dir / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")

    # Weights: the same DyGIE model radgraph builds from this config, randomly initialised.
    from radgraph.allennlp.data import Vocabulary
    from radgraph.allennlp.modules import text_field_embedders, token_embedders
    from radgraph.dygie.models import dygie

    from clinical.extract import radgraph_compat

    radgraph_compat.install()
    torch.manual_seed(seed)
    embedder = text_field_embedders.BasicTextFieldEmbedder(
        {"bert": token_embedders.PretrainedTransformerMismatchedEmbedder(model_name=str(encoder), max_length=max_length)}
    )
    kwargs = {k: v for k, v in config["model"].items() if k not in ("type", "embedder", "initializer", "module_initializer")}
    model = dygie.DyGIE(vocab=Vocabulary.from_files(str(vocab_dir)), embedder=embedder, **kwargs)
    torch.save(model.state_dict(), model_dir / "weights.th")
    return root
