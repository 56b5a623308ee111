"""VQA answers as chat models write them: the figures of issue 11 on an answer-style suite.

The suite (``report/vqa_suite.py``) answers real VQA-RAD and SLAKE (English) questions wrongly in at
least eight styles, and rightly in the same styles; chosen and rejected sides are judged by
``report/vqa_consistency.py``, which shares no code with the editors. Prints:

- closed (yes/no): wrong answers that became pairs; chosen sides stating the gold in every place the
  response answers; chosen sides that contradict themselves;
- open: wrong answers that became pairs; chosen sides giving the gold;
- right answers: an injected wrong answer, stated consistently (closed) and fluent;
- golds given as sentences (the issue's TBX11K case and sentence golds made from the claims): wrong
  answers that became pairs, chosen stating the gold;
- reject reasons, the ``answer_not_editable`` rate, pairs/s.

Run: `.venv/bin/python benchmarks/vqa_answers.py [--per-dataset N] [--show N]`.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from editors.text_pairs import TextPairError  # noqa: E402
from editors.vqa_pairs import make_vqa_pair  # noqa: E402
from report.vqa_consistency import fluent, gives_open, judge_yes_no  # noqa: E402
from report.vqa_suite import answer_pools, build_suite, question_kinds  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:.1f}% ({a}/{b})" if b else "n/a (0)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--per-dataset", type=int, default=300, help="closed and open questions per dataset")
    ap.add_argument("--show", type=int, default=0, help="print N failures of each kind, and N sample pairs")
    args = ap.parse_args()
    if not (args.data / "vqa_rad" / "qa.jsonl").is_file():
        print(f"shared data not found under {args.data}", file=sys.stderr)
        return 2
    suite = build_suite(args.data, per_dataset=args.per_dataset)
    pools, kinds = answer_pools(args.data), question_kinds(args.data)
    n_questions = len({(i.dataset, i.qid, i.kind) for i in suite})
    styles: dict[tuple, set] = {}
    for i in suite:
        if not i.right:
            styles.setdefault((i.dataset, i.qid, i.kind), set()).add(i.style)
    per_q = [len(v) for v in styles.values()]
    print(f"suite: {len(suite)} responses to {n_questions} questions (VQA-RAD, SLAKE English, the TBX11K case); "
          f"wrong-answer styles per question: min {min(per_q)}, median {sorted(per_q)[len(per_q) // 2]}")
    c: Counter = Counter()
    reasons: Counter = Counter()
    fails: dict[str, list[str]] = {}
    samples: list[str] = []
    t0 = time.perf_counter()
    for item in suite:
        group = ("right_" if item.right else "wrong_") + item.kind
        c[group] += 1
        cands = None
        is_open = item.kind in ("open", "sentence_gold_open")
        if is_open:
            gold_low = item.gold.lower()
            cands = [a for a in pools.get((item.dataset, kinds.get((item.dataset, item.qid), "")), []) if a != gold_low]
        try:
            pair = make_vqa_pair(item.response, item.gold, item.question, seed=hash(item.qid) % 1000,
                                 candidates=cands)
        except TextPairError as e:
            reasons[e.reason] += 1
            fails.setdefault(group + ":reject", []).append(f"{e.reason}: {item.question!r} gold={item.gold!r} "
                                                           f"response={item.response!r} ({e.detail})")
            continue
        if item.right:
            ok_side = pair.on_policy == "chosen" and pair.chosen == item.response
            if is_open:
                good = ok_side and not gives_open(pair.rejected, item.expected)
            else:
                opposite = "no" if item.expected == "yes" else "yes"
                v = judge_yes_no(pair.rejected, item.question)
                good = ok_side and v.states(opposite)
            c[group + ":pair"] += ok_side
            c[group + ":good"] += good
            c[group + ":fluent"] += good and fluent(pair.rejected)
        else:
            ok_side = pair.on_policy == "rejected" and pair.rejected == item.response
            c[group + ":pair"] += ok_side
            if is_open:
                good = ok_side and gives_open(pair.chosen, item.expected, item.wrong_value)
            else:
                v = judge_yes_no(pair.chosen, item.question)
                good = ok_side and v.states(item.expected)
                c[group + ":contradicts"] += v.contradicts_itself
            c[group + ":good"] += good
            c[group + ":fluent"] += good and fluent(pair.chosen)
        if not good:
            fails.setdefault(group + ":judged", []).append(f"{item.question!r} gold={item.gold!r}\n      "
                                                           f"rejected={pair.rejected!r}\n      chosen={pair.chosen!r}")
        elif args.show:
            samples.append(f"[{group}/{item.style}] {item.question!r} gold={item.gold!r}\n      "
                           f"rejected={pair.rejected!r}\n      chosen={pair.chosen!r}")
    dt = time.perf_counter() - t0
    w, r = "wrong_closed", "right_closed"
    print(f"wrong closed answers that became pairs: {_pct(c[w + ':pair'], c[w])}")
    print(f"  chosen states the gold in every place (independent judge): {_pct(c[w + ':good'], c[w + ':pair'])}")
    print(f"  chosen contradicts itself: {_pct(c[w + ':contradicts'], c[w + ':pair'])}")
    print(f"wrong open answers that became pairs: {_pct(c['wrong_open:pair'], c['wrong_open'])}")
    print(f"  chosen gives the gold: {_pct(c['wrong_open:good'], c['wrong_open:pair'])}")
    print(f"right closed answers with an injected wrong answer: {_pct(c[r + ':pair'], c[r])}")
    print(f"  rejected states the opposite in every place: {_pct(c[r + ':good'], c[r + ':pair'])}; "
          f"fluent: {_pct(c[r + ':fluent'], c[r + ':good'])}")
    print(f"right open answers with an injected wrong answer: {_pct(c['right_open:pair'], c['right_open'])}")
    print(f"  rejected no longer gives the gold: {_pct(c['right_open:good'], c['right_open:pair'])}; "
          f"fluent: {_pct(c['right_open:fluent'], c['right_open:good'])}")
    s, so = "wrong_sentence_gold", "wrong_sentence_gold_open"
    print(f"gold given as a sentence (yes/no and open): wrong answers that became pairs: "
          f"{_pct(c[s + ':pair'] + c[so + ':pair'], c[s] + c[so])}")
    print(f"  yes/no: {_pct(c[s + ':pair'], c[s])} became pairs; chosen states the gold in every place: "
          f"{_pct(c[s + ':good'], c[s + ':pair'])}; contradicts itself: {_pct(c[s + ':contradicts'], c[s + ':pair'])}")
    print(f"  open: {_pct(c[so + ':pair'], c[so])} became pairs; chosen gives the gold: "
          f"{_pct(c[so + ':good'], c[so + ':pair'])}")
    print(f"answer_not_editable: {_pct(reasons['answer_not_editable'], len(suite))} of all responses")
    print(f"rejects by reason: {dict(reasons.most_common())}")
    print(f"{len(suite) / dt:.0f} responses/s ({dt:.1f} s)")
    if args.show:
        for k in sorted(fails):
            print(f"\n== {k}: {len(fails[k])}")
            for line in fails[k][: args.show]:
                print("   ", line)
        print("\n== sample pairs (seeded random)")
        for line in random.Random(0).sample(samples, min(len(samples), 4 * args.show)):
            print("   ", line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
