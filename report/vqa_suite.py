"""An answer-style suite: real VQA questions answered the way chat VLMs write answers.

Why: a VQA editor tried only on "Yes." and "It is located in the left lung." misses the answers chat
models give ("Based on the image, no, there is no mass in the right hilum.", "The answer is yes.",
a sentence that never says yes or no). For each question this writes wrong answers in at least eight
styles, and right answers in the same styles (for injection), from the question's own words. It
shares no code with the editors (``editors/vqa``), so it cannot bend to what they read.

A yes/no question becomes a claim ("Is there a mass in the right hilum?" -> "there is a mass in the
right hilum" / "there is no mass in the right hilum"); questions whose claim this simple rewriter
cannot form get only the styles that need no claim (there are fifteen of those).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_AUX_BE = {"is", "are", "was", "were"}
_AUX_DO = {"does", "do", "did"}
_SUBJ_PRONOUNS = {"this", "it", "that", "these", "those", "they"}
_DETS = {"the", "a", "an", "his", "her", "its", "their", "this", "these", "both", "each"}
_PRED_WORDS = {"normal", "abnormal", "enlarged", "present", "absent", "visible", "seen", "noted", "located", "in",
               "on", "at", "within", "near", "above", "below", "under", "larger", "smaller", "more", "less",
               "midline", "clear", "dilated", "deviated", "shifted", "consistent", "a", "an", "due", "greater",
               "symmetric", "symmetrical", "asymmetric", "intact", "contrast", "hyperdense", "hypodense",
               "evident", "involved", "affected", "displaced", "elevated", "thickened", "widened", "obstructed",
               "calcified", "fractured", "herniated", "inflamed", "infected", "collapsed", "compressed", "taken",
               "there", "suggestive", "indicative", "likely", "characteristic", "compatible", "same",
               "similar", "equal", "different", "bilateral", "unilateral", "both", "higher", "lower", "wider"}
_VERBS = {"show": "shows", "have": "has", "demonstrate": "demonstrates", "contain": "contains", "appear": "appears",
          "involve": "involves", "look": "looks", "reveal": "reveals", "exhibit": "exhibits", "display": "displays",
          "suggest": "suggests", "indicate": "indicates", "extend": "extends", "cross": "crosses",
          "affect": "affects", "compress": "compresses", "enhance": "enhances", "occupy": "occupies",
          "represent": "represents", "depict": "depicts", "include": "includes", "exist": "exists"}

# styles that need no claim: (name, template with {A} = the yes/no word)
TOKEN_STYLES = [
    ("bare", "{A}."),
    ("bare_lower", "{a}"),
    ("based_on_image", "{A}, based on the image."),
    ("answer_is", "The answer is {a}."),
    ("answer_colon", "Answer: {A}"),
    ("according_to", "{A}, according to the image."),
    ("lead_in_answer_is", "Based on the image, the answer is {a}."),
    ("bold", "**{A}**"),
    ("dash_reason", "{A} - based on the findings in this image."),
    ("short_clause", "{A}, {it}."),
    ("label", "{Label}."),
    ("quoted", '"{A}"'),
    ("answer_is_colon", "The answer is: {A}"),
    ("hedged_token", "{A}, though it is hard to say for certain from this image."),
    ("adverb", "Most likely {a}."),
]
# styles that restate the claim: {C} / {c} = the claim (capitalised / not) that fits the answer
CLAIM_STYLES = [
    ("token_then_claim", "{A}. {C}."),
    ("lead_in_token_claim", "Based on the chest X-ray, {a}, {c}."),
    ("claim_only", "{C}."),
    ("token_comma_claim", "{A}, {c}."),
    ("multi_sentence", "{A}. {C}. Clinical correlation is recommended."),
    ("hedged", "{A}, it appears that {c}."),
    ("claim_then_token", "{C}, so the answer is {a}."),
    ("dash_claim", "{A} - {c}."),
    ("semicolon_claim", "{A}; {c}."),
    ("labelled_explanation", "**Answer:** {A}. **Explanation:** {C}."),
    ("lead_in_claim", "In this image, {c}."),
    ("i_can_see", "{A}, I can see that {c}."),
    ("three_sentences", "{A}. {C}. No other abnormality is seen."),
]
OPEN_STYLES = [
    ("bare", "{V}."),
    ("bare_lower", "{v}"),
    ("answer_is", "The answer is {v}."),
    ("it_is", "It is {v}."),
    ("based_on_image", "Based on the image, {v}."),
    ("appears", "This appears to be {v}."),
    ("value_based_on", "{V}, based on the image."),
    ("i_think", "I think it is {v}."),
    ("shows", "The image shows {v}."),
    ("multi_sentence", "{V}. This is seen on the image."),
]
# equivalent ways clinicians write an answer: a right answer in these words is still right
VARIANTS = {"x-ray": ["chest radiograph", "CXR", "chest X-ray"], "xray": ["radiograph"], "pa": ["posteroanterior"],
            "ap": ["anteroposterior"], "right": ["R"], "left": ["L"], "mri": ["MR", "magnetic resonance imaging"],
            "ct": ["computed tomography"], "axial": ["transverse"], "transverse plane": ["axial"],
            "1": ["one"], "2": ["two"], "3": ["three"], "4": ["four"], "two": ["2"], "one": ["1"], "three": ["3"]}


@dataclass(frozen=True)
class SuiteItem:
    """One response to one real question: ``right`` says whether it agrees with the gold."""

    dataset: str
    qid: str
    question: str
    gold: str
    kind: str  # closed | open | sentence_gold
    style: str
    response: str
    right: bool
    wrong_value: str = ""  # the wrong value it names (open), or the wrong yes/no
    expected: str = ""  # the gold's answer: "yes"/"no" for closed and sentence golds, the gold for open


def claims(question: str) -> tuple[str, str] | None:
    """(affirmative, negative) statement of a yes/no question's claim, lower-case first, or None."""
    q = re.sub(r"\s+", " ", question.strip().rstrip("?.").strip())
    words = q.split(" ")
    if len(words) < 2:
        return None
    aux, rest = words[0].lower(), words[1:]
    rest = [rest[0].lower() if not rest[0].isupper() else rest[0]] + rest[1:]
    if aux in _AUX_BE:
        if rest[0] == "there":
            if len(rest) < 2:
                return None
            body = rest[1:]
            if body[0].lower() == "any":
                body = (["an" if body[1][:1].lower() in "aeiou" else "a"] if aux == "is" and len(body) > 1 else []) \
                    + body[1:]
            pos = " ".join(["there", aux] + body)
            neg_body = body[1:] if body[0].lower() in ("a", "an") else body
            return pos, " ".join(["there", aux, "no"] + neg_body)
        k = _predicate_start(rest)
        if k is None:
            return None
        subj, pred = rest[:k], rest[k:]
        return " ".join(subj + [aux] + pred), " ".join(subj + [aux, "not"] + pred)
    if aux in _AUX_DO:
        for k in range(1, len(rest)):
            base = rest[k].lower()
            if base in _VERBS:
                subj, tail = rest[:k], rest[k + 1 :]
                verb = _VERBS[base] if aux == "does" else base
                if aux == "did":
                    return None
                return " ".join(subj + [verb] + tail), " ".join(subj + [f"{aux} not", base] + tail)
    return None


def _predicate_start(rest: list[str]) -> int | None:
    if rest[0].lower() in _SUBJ_PRONOUNS and len(rest) > 1 and (
            rest[1].lower() in _PRED_WORDS or rest[1].lower() in ("the", "a", "an") or rest[0].lower() == "it"):
        return 1
    start = 2 if rest[0].lower() in _DETS else 1
    for k in range(start, len(rest)):
        w = rest[k].lower()
        if w in _PRED_WORDS or (w.endswith(("ed", "ly")) and len(w) > 4):
            return k
    return len(rest) - 1 if len(rest) >= 3 else None


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def closed_items(dataset: str, qid: str, question: str, gold: str, *, gold_text: str | None = None,
                 kind: str = "closed") -> Iterator[SuiteItem]:
    """Wrong and right answers to a yes/no question in every style that applies to it."""
    cl = claims(question)
    for right in (False, True):
        a = gold if right else ("no" if gold == "yes" else "yes")
        styles = list(TOKEN_STYLES)
        fill = {"A": _cap(a), "a": a, "it": "it is" if a == "yes" else "it is not",
                "Label": "Affirmative" if a == "yes" else "Negative"}
        if cl is not None:
            c = cl[0] if a == "yes" else cl[1]
            fill |= {"C": _cap(c), "c": c}
            styles += CLAIM_STYLES
        for name, tpl in styles:
            yield SuiteItem(dataset, qid, question, gold_text or gold, kind, name, tpl.format(**fill), right,
                            "" if right else a, gold)


def open_items(dataset: str, qid: str, question: str, gold: str, wrong: str) -> Iterator[SuiteItem]:
    """Wrong answers (the value ``wrong``) and right ones (the gold, and its clinical variants)."""
    gold, wrong = " ".join(gold.split()), " ".join(wrong.split())
    for name, tpl in OPEN_STYLES:
        yield SuiteItem(dataset, qid, question, gold, "open", name, tpl.format(V=_cap(wrong), v=wrong), False, wrong,
                        gold)
    rights = [gold] + VARIANTS.get(gold.lower().strip(), [])
    for i, (name, tpl) in enumerate(OPEN_STYLES):
        value = rights[i % len(rights)]
        v = value if value.isupper() or any(c.isupper() for c in value[1:]) else value.lower()
        yield SuiteItem(dataset, qid, question, gold, "open", name, tpl.format(V=_cap(v), v=v), True, "", gold)


def _rows(data: Path) -> Iterator[tuple[str, dict]]:
    for line in (data / "vqa_rad" / "qa.jsonl").open():
        r = json.loads(line)
        yield "vqa_rad", r | {"kind_key": r.get("question_type", "")}
    for line in (data / "vqa_slake_qa" / "qa.jsonl").open():
        r = json.loads(line)
        if r.get("q_lang") == "en":
            yield "slake", r | {"kind_key": r.get("content_type", "")}


def _simple_norm(s: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", s.lower()).split())


def build_suite(data: Path, *, per_dataset: int = 400, seed: int = 0) -> list[SuiteItem]:
    """The suite over ``per_dataset`` closed and ``per_dataset`` open questions of each dataset (a seeded
    sample), plus sentence golds made from the closed claims and the issue's TBX11K case."""
    rng = random.Random(seed)
    closed: dict[str, list[dict]] = {}
    opened: dict[str, list[dict]] = {}
    pools: dict[tuple[str, str], list[str]] = {}
    for ds, r in _rows(data):
        ans = str(r.get("answer", "")).strip()
        yn = _simple_norm(ans)
        if yn in ("yes", "no"):
            closed.setdefault(ds, []).append(r | {"yn": yn})
        elif str(r.get("answer_type", "")).upper() == "OPEN" and ans and " or " not in r["question"].lower():
            opened.setdefault(ds, []).append(r)
            pools.setdefault((ds, r["kind_key"]), []).append(ans)
    items: list[SuiteItem] = []
    for ds in sorted(closed):
        rows = _dedupe(closed[ds])
        for r in rng.sample(rows, min(per_dataset, len(rows))):
            items += closed_items(ds, str(r["qid"]), r["question"], r["yn"])
            cl = claims(r["question"])
            if cl is not None:
                c = cl[0] if r["yn"] == "yes" else cl[1]
                sentence = f"{_cap(r['yn'])}, {c}." if int(r["qid"]) % 2 else f"{_cap(c)}."
                items += [i for i in closed_items(ds, str(r["qid"]), r["question"], r["yn"], gold_text=sentence,
                                                  kind="sentence_gold") if not i.right]
    for ds in sorted(opened):
        rows = _dedupe(opened[ds])
        for r in rng.sample(rows, min(per_dataset, len(rows))):
            gold = str(r["answer"]).strip()
            others = sorted({a for a in pools[(ds, r["kind_key"])] if _simple_norm(a) != _simple_norm(gold)
                             and _simple_norm(a) not in _simple_norm(gold) and _simple_norm(gold) not in _simple_norm(a)})
            if not others:
                continue
            wrong = rng.choice(others)
            items += open_items(ds, str(r["qid"]), r["question"], gold, wrong)
            if len(gold.split()) <= 4:  # the same gold written as a sentence, as reports used as VQA references are
                low = " ".join(gold.split()) if gold.isupper() else " ".join(gold.split()).lower()
                sentence = f"It is {low}." if int(r["qid"]) % 2 else f"The image shows {low}."
                items += [SuiteItem(i.dataset, i.qid, i.question, sentence, "sentence_gold_open", i.style, i.response,
                                    False, i.wrong_value, i.expected)
                          for i in open_items(ds, str(r["qid"]), r["question"], gold, wrong) if not i.right]
    tb_q, tb_gold = "Is there evidence of pulmonary tuberculosis?", "Yes, there are tuberculosis lesions in both upper lungs."
    items += [SuiteItem("tbx11k", "tb", tb_q, tb_gold, "sentence_gold", "token_comma_claim",
                        "No, the lungs are clear.", False, "no", "yes")]
    items += [i for i in closed_items("tbx11k", "tb", tb_q, "yes", gold_text=tb_gold, kind="sentence_gold")
              if not i.right]
    return items


def _dedupe(rows: list[dict]) -> list[dict]:
    seen, out = set(), []
    for r in rows:
        key = (r["question"].strip().lower(), str(r["answer"]).strip().lower())
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def answer_pools(data: Path) -> dict[tuple[str, str], list[str]]:
    """Other gold answers per (dataset, kind of question): the importers' ``answer_candidates``."""
    pools: dict[tuple[str, str], dict[str, int]] = {}
    for ds, r in _rows(data):
        ans = str(r.get("answer", "")).strip()
        if str(r.get("answer_type", "")).upper() == "OPEN" and ans:
            c = pools.setdefault((ds, r["kind_key"]), {})
            c[ans.lower()] = c.get(ans.lower(), 0) + 1
    return {k: [a for a, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:9]] for k, c in pools.items()}


def question_kinds(data: Path) -> dict[tuple[str, str], str]:
    return {(ds, str(r["qid"])): r["kind_key"] for ds, r in _rows(data)}
