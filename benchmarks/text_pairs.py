"""Text-stage benchmark and quality figures on the real IU X-ray model generations and NIH model reports.

Prints: pairs and rejects by reason; contradictions left and errors fixed (the project's extractor);
structural fluency failures and unsupported denials in chosen; the independent labeler's
contradictions before and after, and chosen sides against the OpenI radiologists' MeSH terms; the
extractor against MeSH (per-concept precision and recall); the injected-error mix; the median word
edit ratio; mask coverage; pairs/s on one core (extraction, detection, verified edits, token masks).
Run: `.venv/bin/python benchmarks/text_pairs.py [--repeat N]` (or `make bench`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from clinical.metrics import differing_token_positions, word_edit_ratio  # noqa: E402
from editors.text_pairs import TextPairError, TextPairMaker  # noqa: E402
from pipeline.token_masks import load_tokenizer, token_masks  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
DATA = SHARED / "iu_xray_model_generations" / "generations.jsonl"
OPENI = SHARED / "iu_xray_openi_reports" / "reports.jsonl"
NIH = SHARED / "nih_cxr14_rexrank_model_reports"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--repeat", type=int, default=5, help="passes over the data for the speed figure")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    rows = [json.loads(line) for line in args.data.open()]
    tok, _ = load_tokenizer(None)
    maker = TextPairMaker()
    maker.make("no effusion .", "Small effusion.")  # load lexicon and tokenizer outside the timing

    # quality, on one pass
    maker_q = maker
    pairs, rejects = [], {}
    for i, r in enumerate(rows):
        try:
            pairs.append((r, maker.make(r["generated_report"], r["reference_report"], seed=i)))
        except TextPairError as e:
            rejects[e.reason] = rejects.get(e.reason, 0) + 1
    found = fixed = new = 0
    for r, p in pairs:
        if p.on_policy != "rejected":
            continue
        ref = maker.reference_findings(r["reference_report"])
        b, a = maker.analyse(p.rejected, ref).keys, maker.analyse(p.chosen, ref).keys
        found, fixed, new = found + len(b), fixed + len(b - a), new + bool(a - b)
    differing = extra = unmasked = 0
    for _r, p in pairs:
        c_ids, r_ids, cm, rm = token_masks(tok, p.chosen, p.rejected, p.edits)
        dr, dc = differing_token_positions(r_ids, c_ids)
        differing += len(dr) + len(dc)
        unmasked += sum(1 for k in dc if not cm[k]) + sum(1 for k in dr if not rm[k])
        extra += sum(1 for k, v in enumerate(cm) if v and k not in dc) + sum(1 for k, v in enumerate(rm) if v and k not in dr)
    ratios = [word_edit_ratio(p.rejected, p.chosen) for _r, p in pairs]
    refs = [word_edit_ratio(r["generated_report"], r["reference_report"].lower()) for r in rows]

    # speed: a fresh maker (no warm reference cache), the whole text stage incl. token masks
    maker = TextPairMaker()
    maker.make("no effusion (pleural fluid) .", "Small effusion.")  # lexicon, tokenizer, abbreviation model
    n = 0
    t0 = time.perf_counter()
    from clinical.extract.tokens import tokenize

    for _ in range(args.repeat):
        maker._ref_cache.clear()  # every pass starts cold: no text is ever seen before
        tokenize.cache_clear()
        for i, r in enumerate(rows):
            try:
                p = maker.make(r["generated_report"], r["reference_report"], seed=i)
                token_masks(tok, p.chosen, p.rejected, p.edits)
            except TextPairError:
                pass
            n += 1
    dt = time.perf_counter() - t0

    quality(rows, pairs, maker_q)
    print(f"responses: {len(rows)}  pairs: {len(pairs)} ({len(pairs) / len(rows):.1%})  rejects: {rejects or 0}")
    print(f"on_policy=rejected: {sum(p.on_policy == 'rejected' for _r, p in pairs)}  "
          f"on_policy=chosen (injected): {sum(p.on_policy == 'chosen' for _r, p in pairs)}")
    print(f"detected errors fixed and verified: {fixed}/{found} = {fixed / max(1, found):.1%}")
    print(f"chosen responses with a new error: {new}")
    print(f"median word edit ratio: {statistics.median(ratios):.3f} (reference as chosen: {statistics.median(refs):.3f})")
    print(f"differing tokens: {differing}, unmasked: {unmasked}, extra masked: {extra} ({extra / max(1, differing):.1%})")
    print(f"text stage speed (1 core): {n / dt:.0f} pairs/s ({n} responses in {dt:.2f} s)")


def quality(rows, pairs, maker) -> None:
    """The figures that do not come from the extractor grading its own edits."""
    from collections import Counter

    from report.independent_labeler import default_labeler
    from report.quality_figures import (
        extraction_vs_mesh,
        fluency_failures,
        independent_rows,
        summarise_independent,
        written_denials,
    )

    left = sum(1 for r, p in pairs if p.on_policy == "rejected" and [
        e for e in maker.analyse(p.chosen, maker.reference_findings(r["reference_report"])).errors
        if not (e.error_type == "missed_finding" and e.kind == "omitted")])
    omissions = sum(len(p.notes.get("omissions_left") or {}) for _r, p in pairs)
    flu = [f for _r, p in pairs for f in fluency_failures(p.chosen, p.rejected, p.on_policy)]
    den = [d for r, p in pairs for d in written_denials(p.chosen, p.rejected, r["reference_report"], p.on_policy)]
    mix = Counter(p.notes.get("injection") for _r, p in pairs if p.on_policy == "chosen")
    print("== IU generations: quality ==")
    print(f"corrected pairs whose chosen still contradicts the reference (extractor): {left}; "
          f"omitted findings left in chosen: {omissions}")
    print(f"structural fluency failures in edited sentences: {len(flu)}  {flu[:3]}")
    print(f"denials written into chosen that the reference does not make: {len(den)}  {den[:3]}")
    print(f"injected errors: {dict(mix.most_common())}")
    labeler = default_labeler()
    mesh = {}
    if OPENI.exists():
        for line in OPENI.open():
            rec = json.loads(line)
            mesh[str(rec["uid"])] = rec.get("mesh_major") or []
    recs = [{"reference": r["reference_report"], "rejected": p.rejected, "chosen": p.chosen,
             "on_policy": p.on_policy, "sample_id": str(r["uid"])} for r, p in pairs]
    ind = summarise_independent(independent_rows(recs, labeler, mesh))
    print(f"independent labeler (corrected pairs {ind['corrected_pairs']}): contradictions with the reference "
          f"{ind['rejected_contradictions']} in rejected -> {ind['chosen_contradictions']} in chosen; pairs with an "
          f"added contradiction or unsupported claim: {ind['pairs_with_added_issue']}; unsupported denials: "
          f"{ind['unsupported_denials']}; injected pairs' chosen contradicting the reference: "
          f"{ind['injected_chosen_contradictions']}/{ind['injected_pairs']}")
    print(f"chosen vs the OpenI MeSH terms ({ind['mesh_pairs']} pairs): chosen denies a MeSH finding in "
          f"{ind['chosen_denies_mesh_finding']}; asserts a finding MeSH does not list in {ind['chosen_claims_beyond_mesh']}")
    if OPENI.exists():
        ex = extraction_vs_mesh([json.loads(line) for line in OPENI.open()], maker)
        worst = sorted(((c, v) for c, v in ex["per_concept"].items() if v["tp"] + v["fn"] >= 20),
                       key=lambda cv: cv[1]["recall"])[:4]
        print(f"extractor vs MeSH on {ex['reports']} OpenI reports: recall {ex['recall']:.3f}, precision "
              f"{ex['precision']:.3f}, side agreement {ex['side_agreement']:.3f} ({ex['side_pairs']}); lowest recall: "
              + ", ".join(f"{c} {v['recall']:.2f}" for c, v in worst))
    nih_quality(maker, labeler)


def nih_quality(maker, labeler) -> None:
    """The NIH ChestX-ray14 images' seven model reports against their label-list references."""
    from collections import Counter

    from pipeline.importers import import_samples
    from report.quality_figures import fluency_failures, independent_rows, summarise_independent

    if not NIH.exists():
        return
    out, why = [], Counter()
    for rec in import_samples("nih-reports", NIH):
        for k, resp in enumerate(rec.get("responses") or []):
            try:
                out.append((rec, maker.make(resp, rec["reference"], seed=k,
                                            scope=rec["meta"].get("reference_scope"))))
            except TextPairError as e:
                why[e.reason] += 1
    flu = [f for _r, p in out for f in fluency_failures(p.chosen, p.rejected, p.on_policy)]
    n = len(out) + sum(why.values())
    ind = summarise_independent(independent_rows(
        [{"reference": r["reference"], "rejected": p.rejected, "chosen": p.chosen, "on_policy": p.on_policy,
          "sample_id": r["sample_id"]} for r, p in out], labeler))
    print(f"== NIH model reports: {n} responses -> {len(out)} pairs, rejects {dict(why)}; fluency failures "
          f"{len(flu)}; independent labeler contradictions {ind['rejected_contradictions']} -> "
          f"{ind['chosen_contradictions']}, pairs with an added issue {ind['pairs_with_added_issue']}")


if __name__ == "__main__":
    main()
