"""Pure functions that judge preference pairs with the independent labeler and the OpenI MeSH terms.

Why: a pair (reference, rejected, chosen) is only useful if the chosen text fixes the rejected text's
clinical errors without adding new ones. The project verifies that with its own extractor; these
functions re-check it with `report.independent_labeler` (no shared code), and against expert MeSH
labels where a sample has them, so that an extractor bug cannot silently pass its own edits.

Definitions, per observation o, with L(x) the label of o in text x (None = unmentioned):
- issue of a text t against the reference r:
  "contradiction" if one of L(t), L(r) is positive and the other negative;
  "unsupported"   if L(t) is positive and L(r) is None (a claim the reference does not make).
  Uncertain labels raise no issue: a hedge neither asserts nor denies.
- resolved: issues of the rejected text absent from the chosen text;
- added: issues of the chosen text that the rejected text did not have;
- unsupported_denials: L(chosen) negative, L(rejected) not negative, L(reference) not negative
  (the edit inserted a "no X" the reference never said).
Texts may be given as strings or as label dicts already computed (so a reference labelled once can
be reused across its pairs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from report.mesh_labels import HEADS, OVERRIDES, QUALIFIED, is_normal, map_term, mesh_observations

PAIR_COUNTS = ("rejected_contradictions", "rejected_unsupported", "rejected_issues", "chosen_contradictions",
               "chosen_unsupported", "chosen_issues", "resolved", "added", "unsupported_denials")
MESH_COUNTS = ("mesh_denials", "mesh_unsupported_claims", "mesh_omissions")
# Observations that some MeSH term can express: only these can be called unsupported by MeSH.
MESH_OBSERVABLE = frozenset(o for table in (HEADS, QUALIFIED, OVERRIDES) for _, obs in table.values() for o in obs)


def _labels(text_or_labels, labeler) -> dict[str, str]:
    if isinstance(text_or_labels, Mapping):
        return dict(text_or_labels)
    return labeler.label(text_or_labels or "")


def issues(text: Mapping[str, str], reference: Mapping[str, str]) -> dict[str, str]:
    """{observation: "contradiction" | "unsupported"} of a labelled text against a labelled reference."""
    out = {}
    for obs in set(text) | set(reference):
        t, r = text.get(obs), reference.get(obs)
        if {t, r} == {"positive", "negative"}:
            out[obs] = "contradiction"
        elif t == "positive" and r is None:
            out[obs] = "unsupported"
    return out


def pair_contradictions(reference, rejected, chosen, labeler) -> dict:
    """Label the three texts and count the rejected text's issues, the chosen text's, and the change."""
    ref, rej, cho = (_labels(x, labeler) for x in (reference, rejected, chosen))
    rej_issues, cho_issues = issues(rej, ref), issues(cho, ref)
    resolved = sorted(o for o in rej_issues if o not in cho_issues)
    added = sorted(o for o in cho_issues if o not in rej_issues)
    denials = sorted(o for o, lab in cho.items()
                     if lab == "negative" and rej.get(o) != "negative" and ref.get(o) != "negative")
    observations = {o: {"reference": ref.get(o), "rejected": rej.get(o), "chosen": cho.get(o)}
                    for o in sorted(set(ref) | set(rej) | set(cho))}

    def count(found: dict[str, str], kind: str) -> int:
        return sum(1 for k in found.values() if k == kind)

    return {
        "observations": observations,
        "rejected_issue_kinds": rej_issues,
        "chosen_issue_kinds": cho_issues,
        "rejected_contradictions": count(rej_issues, "contradiction"),
        "rejected_unsupported": count(rej_issues, "unsupported"),
        "rejected_issues": len(rej_issues),
        "chosen_contradictions": count(cho_issues, "contradiction"),
        "chosen_unsupported": count(cho_issues, "unsupported"),
        "chosen_issues": len(cho_issues),
        "resolved": len(resolved),
        "added": len(added),
        "unsupported_denials": len(denials),
        "resolved_observations": resolved,
        "added_observations": added,
        "unsupported_denial_observations": denials,
    }


def mesh_informative(mesh_terms: Iterable[str]) -> bool:
    """False when the terms say nothing either way (empty, 'No Indexing', image quality only)."""
    terms = list(mesh_terms)
    return is_normal(terms) or any(map_term(t) is not None for t in terms)


def chosen_vs_mesh(chosen, mesh_terms: Iterable[str], labeler) -> dict:
    """Compare the chosen text with expert MeSH terms.

    mesh_denials: the chosen text negates an observation MeSH marks present (a contradiction).
    mesh_unsupported_claims: the chosen text asserts (positive) an observation MeSH can express but did
    not mark, including every asserted one when MeSH says "normal".
    mesh_omissions: MeSH-present observations the chosen text does not mention (informational only:
    a short report may leave things out).
    """
    terms = list(mesh_terms)
    cho = _labels(chosen, labeler)
    if not mesh_informative(terms):
        return {"mesh_informative": False, "mesh_normal": False, "mesh_observations": [],
                **{k: 0 for k in MESH_COUNTS}, "mesh_denial_observations": [], "mesh_unsupported_observations": []}
    present = mesh_observations(terms)
    denials = sorted(o for o in present if cho.get(o) == "negative")
    claims = sorted(o for o, lab in cho.items() if lab == "positive" and o in MESH_OBSERVABLE and o not in present)
    omissions = sorted(o for o in present if o not in cho)
    return {
        "mesh_informative": True,
        "mesh_normal": is_normal(terms),
        "mesh_observations": sorted(present),
        "mesh_denials": len(denials),
        "mesh_unsupported_claims": len(claims),
        "mesh_omissions": len(omissions),
        "mesh_denial_observations": denials,
        "mesh_unsupported_observations": claims,
    }


def summarise(rows: Iterable[Mapping]) -> dict:
    """Totals and rates over rows of `pair_contradictions` output, optionally merged with `chosen_vs_mesh`.

    Rates: `*_per_pair` are means; `pairs_with_*` are shares of pairs with at least one; `resolve_rate`
    is resolved / rejected issues; `mesh_*_rate` are over rows whose MeSH terms were informative.
    """
    rows = list(rows)
    n = len(rows)
    out: dict = {"pairs": n}
    pair_rows = [r for r in rows if "rejected_issues" in r]
    for key in PAIR_COUNTS:
        total = sum(int(r.get(key, 0)) for r in pair_rows)
        out[key] = total
        out[f"{key}_per_pair"] = total / len(pair_rows) if pair_rows else 0.0
    for key in ("rejected_issues", "chosen_issues", "added", "unsupported_denials"):
        hit = sum(1 for r in pair_rows if r.get(key, 0) > 0)
        out[f"pairs_with_{key}"] = hit / len(pair_rows) if pair_rows else 0.0
    out["resolve_rate"] = out["resolved"] / out["rejected_issues"] if out["rejected_issues"] else 0.0
    mesh_rows = [r for r in rows if r.get("mesh_informative")]
    out["mesh_rows"] = len(mesh_rows)
    for key in MESH_COUNTS:
        total = sum(int(r.get(key, 0)) for r in mesh_rows)
        out[key] = total
        hit = sum(1 for r in mesh_rows if r.get(key, 0) > 0)
        out[f"{key}_rate"] = hit / len(mesh_rows) if mesh_rows else 0.0
    return out
