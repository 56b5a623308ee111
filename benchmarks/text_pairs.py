"""Text-stage benchmark and quality figures on the real IU X-ray model generations.

Prints: pairs/s on one core (extraction, error detection, edits with verification, token masks),
detected errors fixed and verified, new errors in chosen, median word edit ratio, mask coverage.
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

from pipeline.metrics import word_edit_ratio  # noqa: E402
from pipeline.text_pairs import TextPairError, TextPairMaker  # noqa: E402
from pipeline.token_masks import differing_token_positions, load_tokenizer, token_masks  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "iu_xray_model_generations" / "generations.jsonl"


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
    maker.make("no effusion .", "Small effusion.")
    n = 0
    t0 = time.perf_counter()
    from pipeline.extract.tokens import tokenize

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

    print(f"responses: {len(rows)}  pairs: {len(pairs)}  rejects: {rejects or 0}")
    print(f"on_policy=rejected: {sum(p.on_policy == 'rejected' for _r, p in pairs)}  "
          f"on_policy=chosen (injected): {sum(p.on_policy == 'chosen' for _r, p in pairs)}")
    print(f"detected errors fixed and verified: {fixed}/{found} = {fixed / max(1, found):.1%}")
    print(f"chosen responses with a new error: {new}")
    print(f"median word edit ratio: {statistics.median(ratios):.3f} (reference as chosen: {statistics.median(refs):.3f})")
    print(f"differing tokens: {differing}, unmasked: {unmasked}, extra masked: {extra} ({extra / max(1, differing):.1%})")
    print(f"text stage speed (1 core): {n / dt:.0f} pairs/s ({n} responses in {dt:.2f} s)")


if __name__ == "__main__":
    main()
