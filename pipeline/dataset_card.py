"""The output folder's dataset card: ``README.md`` with the Hugging Face YAML header.

Why: a finished run should be publishable as it is. With this card ``datasets.load_dataset(OUT_DIR)``
loads the pair shards with no arguments (``configs`` points ``data_files`` at ``shard-*.parquet``, so
``rejects.parquet`` beside them is its own config, not mixed in), ``features`` declares the columns
(the image columns as images), and the folder can be uploaded to the Hub unchanged.

The license and sources come from the inputs: each pair's ``meta.manifest_meta.dataset`` (set by the
importers) is looked up in ``SOURCES`` (the licenses the datasets' own pages state), and a
``license`` a manifest record carried itself is listed too. Several licenses make ``license: other``,
with each named in the card: the strictest one applies to the whole folder.

The card is written after ``manifest.json`` (which stays the mark of a complete folder); ``--resume``
on a complete folder writes it when it is missing.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import yaml

CARD = "README.md"

# dataset name in the manifest's meta -> (Hub license id, source, where its terms are)
SOURCES: dict[str, tuple[str, str, str]] = {
    "iu_xray": ("cc-by-nc-nd-4.0", "Indiana University Chest X-ray Collection (IU X-Ray / OpenI, NLM)",
                "https://openi.nlm.nih.gov/faq"),
    "nih_cxr14": ("cc0-1.0", "NIH ChestX-ray14 (NIH Clinical Center; cite Wang et al., CVPR 2017)",
                  "https://nihcc.app.box.com/v/ChestXray-NIHCC"),
    "vqa_rad": ("cc0-1.0", "VQA-RAD (Lau et al., Scientific Data 2018)", "https://osf.io/89kps/"),
    "slake": ("cc-by-4.0", "SLAKE (Liu et al., ISBI 2021)", "https://www.med-vqa.com/slake/"),
    "chestx_det": ("apache-2.0", "ChestX-Det annotations on NIH ChestX-ray14 images",
                   "https://github.com/Deepwise-AILab/ChestX-Det-Dataset"),
    "tbx11k": ("other", "TBX11K (Liu et al., CVPR 2020): research use with citation", "https://mmcheng.net/tb/"),
    "mimic_cxr": ("other", "MIMIC-CXR: PhysioNet Credentialed Health Data License 1.5.0 (do not publish)",
                  "https://physionet.org/content/mimic-cxr/"),
    "chexpert_plus": ("other", "CheXpert Plus: Stanford AIMI research use agreement (do not publish)",
                      "https://aimi.stanford.edu/datasets/chexpert-plus"),
}


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "n>10M"


def input_sources(out_dir: Path, shards: list[str]) -> tuple[Counter, Counter]:
    """(pairs per input dataset, pairs per license a manifest record named), from the shards' ``meta``."""
    datasets, licenses = Counter(), Counter()
    for name in shards:
        for batch in pq.ParquetFile(out_dir / name).iter_batches(columns=["meta"], batch_size=4096):
            for raw in batch.column(0).to_pylist():
                try:
                    meta = json.loads(raw or "{}").get("manifest_meta") or {}
                except (ValueError, AttributeError):
                    meta = {}
                datasets[str(meta.get("dataset") or "unknown")] += 1
                if meta.get("license"):
                    licenses[str(meta["license"])] += 1
    return datasets, licenses


def _features_yaml() -> list:
    import datasets

    from pipeline.packing import pair_schema_metadata

    features = json.loads(pair_schema_metadata()[b"huggingface"])["info"]["features"]
    info = datasets.DatasetInfo(features=datasets.Features.from_dict(features))
    return info._to_yaml_dict()["features"]


def card_text(out_dir: Path, manifest: dict) -> str:
    """The card for a finished run's ``manifest.json``."""
    counts, shards = manifest["counts"], manifest["shards"]
    summary = manifest.get("summary") or {}
    by_dataset, named = input_sources(out_dir, shards)
    known = {d: SOURCES[d] for d in by_dataset if d in SOURCES}
    ids = sorted({lic for lic, _, _ in known.values()})
    license_id = ids[0] if len(ids) == 1 and not named and "unknown" not in by_dataset else "other"
    stages = (manifest.get("stats") or {}).get("stages") or {}
    has_images = (stages.get("image_load") or {}).get("items", 0) > 0  # some sample had images
    header = {
        "license": license_id,
        "pretty_name": "medpref preference pairs",
        "tags": ["medical", "radiology", "preference", "dpo", "fire-mpo"],
        "task_categories": ["image-text-to-text" if has_images else "text-generation"],
        "size_categories": [_size_category(counts["pairs"])],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "shard-*.parquet"}]},
                    {"config_name": "rejects", "data_files": [{"split": "train", "path": "rejects.parquet"}]}],
        "dataset_info": {"config_name": "default", "features": _features_yaml(),
                         "splits": [{"name": "train", "num_examples": int(counts["pairs"])}]},
    }
    lines = ["---", yaml.safe_dump(header, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             "# medpref preference pairs", "",
             "Fine-grained preference pairs for medical vision-language models (FiRe-MPO data), written by "
             f"`build-pairs run` (medpref {manifest.get('pipeline_version', '?')}). `chosen` is a verified "
             "minimal edit of `rejected`; the token masks mark the edited tokens; `corrupted_images` are the "
             "lesion-corrupted images of the reversed visual term. Columns: CONTRACT.md section 4 of medpref.",
             "", "```python", "from datasets import load_dataset", "pairs = load_dataset(\"PATH/TO/THIS/FOLDER\")",
             "```", "", "## Counts", "", "| | count |", "|---|---:|"]
    lines += [f"| {k} | {int(counts[k]):,} |" for k in ("samples", "responses", "pairs", "rejects")]
    if summary.get("error_types"):
        lines += ["", "## Error types", "", "| error type | edits of that type |", "|---|---:|"]
        lines += [f"| {k} | {v:,} |" for k, v in summary["error_types"].items()]
    if summary.get("rejects_by_reason"):
        lines += ["", "## Rejects (`rejects.parquet`, config `rejects`)", "", "| reason | rows |", "|---|---:|"]
        lines += [f"| {k} | {v:,} |" for k, v in summary["rejects_by_reason"].items()]
    lines += ["", "## Sources and licenses", "",
              "The pairs derive from these inputs; each input's terms apply to the pairs made from it.", "",
              "| input dataset | pairs | license | source |", "|---|---:|---|---|"]
    for name, n in by_dataset.most_common():
        lic, what, url = SOURCES.get(name, ("unknown", "not a known dataset: check its terms", ""))
        lines.append(f"| {name} | {n:,} | {lic} | {what}" + (f" ({url})" if url else "") + " |")
    if named:
        lines += ["", "Licenses named by the input records themselves: "
                  + ", ".join(f"{k} ({v:,} pairs)" for k, v in named.most_common()) + "."]
    source = manifest.get("source") or {}
    lines += ["", "## Provenance", "",
              f"- manifest: `{source.get('samples', '?')}` (sha256 `{str(source.get('sha256', '?'))[:16]}...`)",
              f"- configuration hash: `{manifest.get('config_hash', '?')}`; tokenizer: `{manifest.get('tokenizer')}`",
              f"- shards: {len(shards)}; schema version {manifest.get('schema_version')}", ""]
    return "\n".join(lines)


def write_card(out_dir: str | Path, manifest: dict) -> Path:
    """Write ``OUT_DIR/README.md`` atomically (a temporary file, then a rename)."""
    out_dir = Path(out_dir)
    path = out_dir / CARD
    tmp = out_dir / f".{CARD}.tmp"
    tmp.write_text(card_text(out_dir, manifest), encoding="utf-8")
    tmp.replace(path)
    return path
