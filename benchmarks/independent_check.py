"""How far the independent labeler agrees with expert MeSH labels on the OpenI (IU X-ray) reports.

Why: `report.independent_eval` trusts `IndependentLabeler` to judge pairs; this measures that trust.
For each observation MeSH can express, precision / recall of "labeler says positive" (findings +
impression text) against "a MeSH major term maps to it"; how many MeSH term occurrences the mapping
covers; labelling speed; and `chosen_vs_mesh` on the original reports, the rate a perfect chosen text
would still get (the noise floor of that check).

    .venv/bin/python benchmarks/independent_check.py [--reports PATH] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from report.independent_eval import MESH_OBSERVABLE, chosen_vs_mesh, mesh_informative, summarise  # noqa: E402
from report.independent_labeler import IndependentLabeler  # noqa: E402
from report.mesh_labels import coverage, is_normal, mesh_observations  # noqa: E402

SHARED = Path(os.environ.get("MEDPREF_SHARED_DATA", REPO.parent / "shared" / "data"))
DEFAULT_REPORTS = SHARED / "iu_xray_openi_reports" / "reports.jsonl"


def report_text(r: dict) -> str:
    return " ".join(x.strip() for x in (r.get("findings") or "", r.get("impression") or "") if x and x.strip())


def agreement(reports: list[dict], labels: list[dict[str, str]]) -> tuple[dict, dict]:
    """Per-observation counts tp/fp/fn/uncertain over reports with informative MeSH terms."""
    per: dict[str, Counter] = {o: Counter() for o in sorted(MESH_OBSERVABLE)}
    normal = Counter()
    for r, lab in zip(reports, labels, strict=True):
        terms = r.get("mesh_major") or []
        if not mesh_informative(terms):
            continue
        gold = mesh_observations(terms)
        pos = {o for o, v in lab.items() if v == "positive" and o in MESH_OBSERVABLE}
        if is_normal(terms):
            normal["reports"] += 1
            normal["with_positive"] += bool(pos)
        for o in per:
            g, p = o in gold, o in pos
            per[o]["tp"] += g and p
            per[o]["fp"] += p and not g
            per[o]["fn"] += g and not p
            per[o]["gold"] += g
            per[o]["uncertain_on_gold"] += g and lab.get(o) == "uncertain"
            per[o]["negative_on_gold"] += g and lab.get(o) == "negative"
    return per, normal


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "  -  "


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=Path, default=DEFAULT_REPORTS)
    ap.add_argument("--limit", type=int, default=0, help="first N reports only (0 = all)")
    args = ap.parse_args(argv)
    if not args.reports.exists():
        print(f"reports not found: {args.reports}")
        return 1
    reports = [json.loads(line) for line in args.reports.open()]
    if args.limit:
        reports = reports[: args.limit]
    reports = [r for r in reports if report_text(r)]

    t0 = time.perf_counter()
    labeler = IndependentLabeler()
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels = [labeler.label(report_text(r)) for r in reports]
    label_s = time.perf_counter() - t0
    print(f"reports with text: {len(reports)}; labeler build {build_s:.2f} s; "
          f"labelling {len(reports) / label_s:.0f} texts/s")

    cov = coverage(r.get("mesh_major") or [] for r in reports)
    print(f"\nMeSH coverage: {cov['terms']} term occurrences, {cov['finding_terms']} naming a finding "
          f"(others: normal / No Indexing / image quality)")
    print(f"  finding terms mapped to a project concept: {cov['concept_rate']:.1%}; "
          f"to a labeler observation: {cov['observation_rate']:.1%}; "
          f"all terms accounted for (concept or non-finding): {cov['concept_rate_all']:.1%}")
    print("  most frequent unmapped:", ", ".join(f"{t} ({k})" for t, k in cov["top_unmapped"][:10]))

    per, normal = agreement(reports, labels)
    print("\nLabeler positive vs MeSH-positive (findings + impression), per observation:")
    print(f"  {'observation':28s} {'gold':>5s} {'tp':>5s} {'fp':>5s} {'fn':>5s} {'prec':>6s} {'recall':>6s}"
          f" {'unc@gold':>8s} {'neg@gold':>8s}")
    tot = Counter()
    for o, c in sorted(per.items(), key=lambda kv: -kv[1]["gold"]):
        if not (c["gold"] or c["fp"]):
            continue
        tot.update(c)
        print(f"  {o:28s} {c['gold']:5d} {c['tp']:5d} {c['fp']:5d} {c['fn']:5d} "
              f"{_ratio(c['tp'], c['tp'] + c['fp']):>6s} {_ratio(c['tp'], c['gold']):>6s}"
              f" {c['uncertain_on_gold']:8d} {c['negative_on_gold']:8d}")
    print(f"  {'micro (all above)':28s} {tot['gold']:5d} {tot['tp']:5d} {tot['fp']:5d} {tot['fn']:5d} "
          f"{_ratio(tot['tp'], tot['tp'] + tot['fp']):>6s} {_ratio(tot['tp'], tot['gold']):>6s}"
          f" {tot['uncertain_on_gold']:8d} {tot['negative_on_gold']:8d}")
    print(f"\nMeSH 'normal' reports: {normal['reports']}; labeler finds a positive (MeSH-expressible) "
          f"observation in {normal['with_positive']} ({_ratio(normal['with_positive'], normal['reports'])})")

    # The floor of chosen_vs_mesh: the radiologist's own report checked against its own MeSH terms.
    rows = [chosen_vs_mesh(lab, r.get("mesh_major") or [], labeler) for r, lab in zip(reports, labels, strict=True)]
    s = summarise(rows)
    print(f"\nchosen_vs_mesh on the original reports (noise floor, {s['mesh_rows']} informative): "
          f"denials in {s['mesh_denials_rate']:.1%} of reports ({s['mesh_denials']}), unsupported claims in "
          f"{s['mesh_unsupported_claims_rate']:.1%} ({s['mesh_unsupported_claims']}), omissions in "
          f"{s['mesh_omissions_rate']:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
