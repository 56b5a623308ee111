"""Medical VQA importers (VQA-RAD, SLAKE): the question is the prompt, the gold answer the reference.

VQA-RAD ships only its chest images: questions about the other organs keep their original image name
(the pipeline rejects them as ``image_unreadable`` unless --images-dir supplies the files). SLAKE ships
no images at all, so without --images-dir its records are text-only and say so in meta.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import ImagePaths, first_existing, make_record, read_jsonl, resolve_source, text

MAX_CANDIDATES = 8


def answer_pool(path: Path, kind_key: str, lang_key: str | None = None) -> dict[str, list[str]]:
    """The most frequent open answers per kind of question in the whole file (first pass). A right
    answer needs a plausible wrong one to be injected; the dataset's own answers to the same kind of
    question are that, and deterministic."""
    counts: dict[str, Counter] = {}
    for row in read_jsonl(path):
        if text(row.get("answer_type")).lower() != "open" or (lang_key and text(row.get(lang_key)) != "en"):
            continue
        ans = text(row.get("answer")).strip()
        if ans:
            counts.setdefault(text(row.get(kind_key)), Counter())[ans.lower()] += 1
    return {k: [a for a, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[: MAX_CANDIDATES + 1]]
            for k, c in counts.items()}


def _candidates(pool: dict[str, list[str]], kind: str, answer: str) -> list[str]:
    return [a for a in pool.get(kind, []) if a != answer.strip().lower()][:MAX_CANDIDATES]


def import_vqa_rad(source: Path, paths: ImagePaths) -> Iterator[dict[str, Any]]:
    path = resolve_source(source, ["qa.jsonl"], "vqa-rad")
    pool = answer_pool(path, "question_type")
    for row in read_jsonl(path):
        name = text(row.get("image_name"))
        png = text(row.get("image_png"))
        meta: dict[str, Any] = {k: v for k, v in row.items() if k not in {"question", "answer"}}
        meta["dataset"] = "vqa_rad"
        meta["answer_type"] = text(row.get("answer_type")).lower()
        if meta["answer_type"] == "open":
            meta["answer_candidates"] = _candidates(pool, text(row.get("question_type")), text(row.get("answer")))
        override = paths.in_images_dir(*[n for n in (Path(png).name if png else "", name) if n])
        if override is not None:
            image = override
        elif png:
            image = path.parent / png
        else:
            image = first_existing([path.parent / "images" / name, path.parent / name])
            if not image.is_file():
                meta["images_note"] = "VQA-RAD ships only CHEST images; pass --images-dir with the original images"
        yield make_record(
            f"vqarad-{row['qid']}", "vqa", text(row.get("question")), text(row.get("answer")),
            images=[paths.ref(image)], meta=meta,
        )


def import_slake(source: Path, paths: ImagePaths) -> Iterator[dict[str, Any]]:
    path = resolve_source(source, ["qa.jsonl"], "slake")
    pool = answer_pool(path, "content_type", lang_key="q_lang")
    for row in read_jsonl(path):
        name = text(row.get("img_name"))
        meta: dict[str, Any] = {k: v for k, v in row.items() if k not in {"question", "answer", "q_lang"}}
        meta.update(
            dataset="slake",
            language=text(row.get("q_lang")),
            answer_type=text(row.get("answer_type")).lower(),
            question_type=text(row.get("content_type")),
        )
        if meta["answer_type"] == "open" and meta["language"] == "en":
            meta["answer_candidates"] = _candidates(pool, meta["question_type"], text(row.get("answer")))
        image = paths.in_images_dir(name) if name else None
        if image is None:
            meta["images_note"] = "SLAKE images not shipped; text-only"
        yield make_record(
            f"slake-{row['qid']}", "vqa", text(row.get("question")), text(row.get("answer")),
            images=[paths.ref(image)] if image is not None else [], meta=meta,
        )
