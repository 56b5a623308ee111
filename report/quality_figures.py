"""Quality figures of report pairs that do not grade the editors with their own extractor.

Why a module: `build-pairs eval` and `benchmarks/text_pairs.py` print the same figures. Three
independent views: (a) the structural fluency checker (`clinical.fluency`, plain text rules);
(b) the independent labeler (`report.independent_labeler`, CheXpert phrases + negation rules, no
code shared with the extractor) against the reference and against the OpenI radiologists' MeSH
terms; (c) unsupported denials: negations written into chosen that the reference never makes.
The extractor is measured too, but only against the human MeSH labels.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

from clinical.fluency import edit_problems, split_sentences

_NEG = re.compile(r"\b(no|not|without|negative for|free of)\b", re.IGNORECASE)


def _norm(s: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", s.lower().replace("xxxx", "")))


def fluency_failures(chosen: str, rejected: str, on_policy: str) -> list[str]:
    """Structural problems of the sentences the edit wrote (chosen when fixing, rejected when injecting)."""
    return edit_problems(rejected, chosen) if on_policy == "rejected" else edit_problems(chosen, rejected)


def written_denials(chosen: str, rejected: str, reference: str, on_policy: str) -> list[str]:
    """Sentences of a corrected chosen side that deny something and are not the reference's own words."""
    if on_policy != "rejected":
        return []
    old = {_norm(rejected[s:e]) for s, e in split_sentences(rejected)}
    ref = _norm(reference)
    out = []
    words = set(_norm(rejected).split()) | {"or", "and"}
    for s, e in split_sentences(chosen):
        sent = chosen[s:e]
        if _NEG.search(sent) and _norm(sent) not in old and _norm(sent) not in ref \
                and not set(_norm(sent).split()) <= words:  # words only taken away: the response's own denial
            out.append(sent.strip())
    return out


def independent_rows(pairs: Iterable[Mapping], labeler, mesh: Mapping[str, list[str]] | None = None) -> list[dict]:
    """One row per pair (keys reference, rejected, chosen, on_policy, sample_id): the independent
    labeler's contradictions, and the MeSH comparison when the sample has MeSH terms."""
    from report.independent_eval import chosen_vs_mesh, pair_contradictions

    ref_cache: dict[str, dict] = {}
    rows = []
    for p in pairs:
        ref = ref_cache.get(p["reference"])
        if ref is None:
            ref = ref_cache[p["reference"]] = labeler.label(p["reference"])
        row = pair_contradictions(ref, p["rejected"], p["chosen"], labeler)
        row["on_policy"] = p["on_policy"]
        terms = (mesh or {}).get(p["sample_id"])
        if terms is not None:
            row.update(chosen_vs_mesh(p["chosen"], terms, labeler))
        rows.append(row)
    return rows


def summarise_independent(rows: list[dict]) -> dict:
    """Totals over corrected pairs (on_policy = rejected) and over injected ones."""
    fixed = [r for r in rows if r["on_policy"] == "rejected"]
    injected = [r for r in rows if r["on_policy"] == "chosen"]
    out = {
        "corrected_pairs": len(fixed),
        "rejected_contradictions": sum(r["rejected_contradictions"] for r in fixed),
        "chosen_contradictions": sum(r["chosen_contradictions"] for r in fixed),
        "contradictions_resolved": sum(r["rejected_contradictions"] - r["chosen_contradictions"] for r in fixed
                                       if r["rejected_contradictions"] >= r["chosen_contradictions"]),
        "pairs_with_added_issue": sum(1 for r in fixed if r["added"]),
        "unsupported_denials": sum(r["unsupported_denials"] for r in fixed),
        "injected_pairs": len(injected),
        "injected_chosen_contradictions": sum(r["chosen_contradictions"] for r in injected),
    }
    mesh_rows = [r for r in rows if r.get("mesh_informative")]
    out["mesh_pairs"] = len(mesh_rows)
    out["chosen_denies_mesh_finding"] = sum(1 for r in mesh_rows if r["mesh_denials"])
    out["chosen_claims_beyond_mesh"] = sum(1 for r in mesh_rows if r["mesh_unsupported_claims"])
    return out


def extraction_vs_mesh(reports: Iterable[Mapping], maker) -> dict:
    """Per-concept precision and recall of the extractor's positive findings against the OpenI MeSH
    terms of the same report (findings + impression), side-aware where MeSH gives a side."""
    from report.mesh_labels import is_normal, mesh_findings

    tp: Counter = Counter()
    fp: Counter = Counter()
    fn: Counter = Counter()
    side_ok = side_n = 0
    n = 0
    sayable = _mesh_sayable()
    for r in reports:
        terms = r.get("mesh_major") or []
        text = " ".join(x for x in (r.get("findings"), r.get("impression")) if x)
        if not text or not terms:
            continue
        gold = mesh_findings(terms)
        if not gold and not is_normal(terms):
            continue  # terms that say nothing about findings (technical quality only)
        n += 1
        found = maker.findings(text)
        pos: dict[str, set[str]] = {}
        for f in found.findings:
            if f.positive:
                pos.setdefault(f.concept, set()).update(f.laterality)
        for c in gold:
            compatible = maker.lexicon.compatible_with(c)
            hit = [k for k in pos if k in compatible]
            if hit:
                tp[c] += 1
                if gold[c] - {"bilateral"}:
                    side_n += 1
                    side_ok += bool(gold[c] & set().union(*(pos[k] for k in hit)))
            else:
                fn[c] += 1
        for k in pos:
            if k in sayable and not any(k in maker.lexicon.compatible_with(c) for c in gold):
                fp[k] += 1
    per = {}
    for c in sorted(set(tp) | set(fn) | set(fp)):
        p = tp[c] / (tp[c] + fp[c]) if tp[c] + fp[c] else None
        rc = tp[c] / (tp[c] + fn[c]) if tp[c] + fn[c] else None
        per[c] = {"tp": tp[c], "fp": fp[c], "fn": fn[c], "precision": p, "recall": rc}
    all_tp, all_fp, all_fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    return {"reports": n, "recall": all_tp / max(1, all_tp + all_fn), "precision": all_tp / max(1, all_tp + all_fp),
            "side_agreement": side_ok / side_n if side_n else None, "side_pairs": side_n, "per_concept": per}


def _mesh_sayable() -> frozenset[str]:
    """Concepts some MeSH term can name: only these can be false positives against MeSH."""
    from report.mesh_labels import HEADS, OVERRIDES, QUALIFIED

    return frozenset(c for table in (HEADS, QUALIFIED, OVERRIDES) for c, _obs in table.values() if c)
