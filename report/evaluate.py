"""`build-pairs eval OUT_DIR`: the quality report on a finished shard folder.

It re-extracts both sides of every pair against its reference, so the figures do not trust what
the builder recorded: errors per type in `rejected` and `chosen`, errors fixed and errors new,
the median word-level edit ratio, and how the token masks cover the tokens that differ. Because
our extractor judging our own edits is not evidence of quality, it also reports what does not
share its code: the structural fluency checker, denials written that the reference never makes,
and the independent labeler's contradictions with the reference before and after the edit.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from clinical.metrics import differing_token_positions, word_edit_ratio
from editors.text_pairs import TextPairMaker
from report.independent_labeler import default_labeler
from report.quality_figures import (
    fluency_failures,
    independent_rows,
    summarise_independent,
    written_denials,
)


def _manifest_meta(meta: str | None) -> dict:
    try:
        return (json.loads(meta or "{}") or {}).get("manifest_meta") or {}
    except ValueError:
        return {}


def _config_text(out_dir: Path):
    try:
        cfg = json.loads((out_dir / "manifest.json").read_text()).get("config", {})
        return type("TextCfg", (), cfg.get("text", {}))()
    except (OSError, ValueError):
        return None


def evaluate(out_dir: Path, extractor: str | None = None) -> dict:
    out_dir = Path(out_dir)
    shards = sorted(out_dir.glob("shard-*.parquet"))
    if not shards:
        raise ValueError(f"{out_dir}: no shard-*.parquet files")
    cfg = _config_text(out_dir)
    if extractor:
        cfg = type("TextCfg", (), {**(vars(cfg) if cfg else {}), "extractor": extractor})()
    maker = TextPairMaker(cfg)
    before: Counter = Counter()
    after: Counter = Counter()
    new_in_chosen = 0
    fixed = 0
    found = 0
    ratios: list[float] = []
    differing = masked = unmasked_diff = extra = 0
    pairs = 0
    by_policy: Counter = Counter()
    fluency: list[str] = []
    denials: list[str] = []
    texts: list[dict] = []
    cols = ["reference", "chosen", "rejected", "on_policy", "task", "chosen_input_ids", "rejected_input_ids",
            "chosen_token_mask", "rejected_token_mask", "meta"]
    for shard in shards:
        for row in pq.read_table(shard, columns=cols).to_pylist():
            pairs += 1
            by_policy[row["on_policy"]] += 1
            ratios.append(word_edit_ratio(row["rejected"], row["chosen"]))
            dr, dc = differing_token_positions(row["rejected_input_ids"], row["chosen_input_ids"])
            cm, rm = row["chosen_token_mask"], row["rejected_token_mask"]
            differing += len(dr) + len(dc)
            masked += sum(cm) + sum(rm)
            unmasked_diff += sum(1 for k in dc if not cm[k]) + sum(1 for k in dr if not rm[k])
            extra += sum(1 for k, v in enumerate(cm) if v and k not in dc)
            extra += sum(1 for k, v in enumerate(rm) if v and k not in dr)
            if row["task"] == "report":
                fluency.extend(fluency_failures(row["chosen"], row["rejected"], row["on_policy"]))
                denials.extend(written_denials(row["chosen"], row["rejected"], row["reference"], row["on_policy"]))
                texts.append({k: row[k] for k in ("reference", "rejected", "chosen", "on_policy")} | {"sample_id": ""})
            if row["task"] != "report" or row["on_policy"] != "rejected":
                continue
            ref = maker.reference_findings(row["reference"])
            scope = maker.scope_of(_manifest_meta(row["meta"]).get("reference_scope"))
            rej = maker.analyse(row["rejected"], ref, scope)
            cho = maker.analyse(row["chosen"], ref, scope)
            for e in rej.errors:
                before[e.error_type] += 1
            for e in cho.errors:
                after[e.error_type] += 1
            found += len(rej.errors)
            fixed += len(rej.keys - cho.keys)
            new_in_chosen += len(cho.keys - rej.keys) > 0
    independent = summarise_independent(independent_rows(texts, default_labeler())) if texts else {}
    manifest = {}
    if (out_dir / "manifest.json").exists():
        manifest = json.loads((out_dir / "manifest.json").read_text())
    return {
        "pairs": pairs,
        "on_policy": dict(by_policy),
        "counts": manifest.get("counts"),
        "errors_before": dict(before),
        "errors_after": dict(after),
        "errors_found": found,
        "errors_fixed": fixed,
        "fixed_fraction": round(fixed / found, 4) if found else None,
        "chosen_with_new_error": new_in_chosen,
        "median_word_edit_ratio": round(statistics.median(ratios), 4) if ratios else None,
        "differing_tokens": differing,
        "differing_tokens_unmasked": unmasked_diff,
        "masked_tokens": masked,
        "extra_masked_tokens": extra,
        "extra_masked_fraction": round(extra / differing, 4) if differing else None,
        "fluency_failures": len(fluency),
        "fluency_examples": fluency[:5],
        "denials_written": len(denials),
        "denial_examples": denials[:5],
        "independent": independent,
    }


def format_report(r: dict) -> str:
    lines = [f"pairs: {r['pairs']}  on_policy: {r['on_policy']}"]
    if r.get("counts"):
        lines.append(f"manifest counts: {r['counts']}")
    lines.append(f"errors in rejected (re-extracted): {r['errors_before']}")
    lines.append(f"errors in chosen   (re-extracted): {r['errors_after']}")
    lines.append(f"errors fixed: {r['errors_fixed']}/{r['errors_found']} ({r['fixed_fraction']})  "
                 f"chosen with a new error: {r['chosen_with_new_error']}")
    lines.append(f"median word edit ratio: {r['median_word_edit_ratio']}")
    lines.append(f"mask coverage: {r['differing_tokens']} differing tokens, {r['differing_tokens_unmasked']} unmasked, "
                 f"{r['extra_masked_tokens']} extra masked ({r['extra_masked_fraction']} of differing)")
    lines.append(f"structural fluency failures in edited sentences: {r['fluency_failures']}  {r['fluency_examples']}")
    lines.append(f"denials written into chosen that the reference does not make: {r['denials_written']}  "
                 f"{r['denial_examples']}")
    ind = r.get("independent") or {}
    if ind:
        lines.append(f"independent labeler, corrected pairs: contradictions with the reference "
                     f"{ind['rejected_contradictions']} in rejected -> {ind['chosen_contradictions']} in chosen; "
                     f"pairs with an added issue: {ind['pairs_with_added_issue']}")
    return "\n".join(lines)
