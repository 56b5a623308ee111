"""Small pair shards built straight from shared data, without the NLP pipeline.

Why: the trainer's tests and benchmark must measure the trainer alone, on real text and real images,
even while (or when) `build-pairs run` changes. These shards follow CONTRACT.md section 4 exactly
(`schemas.pair.pairs_table`, masks by `pipeline.token_masks`), but their edits are a plain word diff,
not verified clinical edits.

- `iu_text_pairs`: IU X-ray model generations; rejected = the generated report, chosen = the reference
  report (normalised casing), edits = the word-level diff between them. Text-only (no images).
- `vqa_image_pairs`: VQA-RAD closed chest questions with their image; chosen = the gold yes/no answer,
  rejected = the opposite, corrupted image = the centre half blacked out.
- `two_view_pairs`: the same with a second, wider view of the image (two images of different sizes).
"""

from __future__ import annotations

import difflib
import hashlib
import io
import json
import os
import re
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from pipeline.token_masks import token_masks
from schemas.pair import Corruption, Edit, ImageRef, PairRecord, pairs_table


def _shared_data() -> Path:
    """``MEDPREF_SHARED_DATA`` or ``../shared/data``; on a clone without either, the committed excerpts
    in ``tests/fixtures/data`` (same layout), so the trainer's tests and benchmark still have real data."""
    full = Path(os.environ.get("MEDPREF_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    fixtures = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "data"
    return full if full.is_dir() or not fixtures.is_dir() else fixtures


SHARED_DATA = _shared_data()


def _words(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def word_edits(rejected: str, chosen: str) -> list[Edit]:
    """Half-open character edits turning `rejected` into `chosen`, one per differing run of words."""
    rw, cw = _words(rejected), _words(chosen)
    matcher = difflib.SequenceMatcher(a=[w for w, _, _ in rw], b=[w for w, _, _ in cw], autojunk=False)
    edits = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        rs = rw[i1][1] if i1 < i2 else (rw[i1 - 1][2] if i1 else 0)
        re_ = rw[i2 - 1][2] if i1 < i2 else rs
        cs = cw[j1][1] if j1 < j2 else (cw[j1 - 1][2] if j1 else 0)
        ce = cw[j2 - 1][2] if j1 < j2 else cs
        kind = {"replace": "false_finding", "delete": "false_finding", "insert": "missed_finding"}[op]
        edits.append(Edit(rs, re_, cs, ce, kind, rejected[rs:re_], chosen[cs:ce]))
    return edits


def _record(tokenizer, sample_id, task, prompt, chosen, rejected, edits, images=(), corrupted=()) -> PairRecord:
    ids_c, ids_r, mask_c, mask_r = token_masks(tokenizer, chosen, rejected, edits)
    return PairRecord(
        pair_id=hashlib.sha1(f"{sample_id}|{chosen}|{rejected}".encode()).hexdigest()[:16],
        sample_id=sample_id,
        task=task,
        prompt=prompt,
        images=list(images),
        corrupted_images=list(corrupted),
        corruption=Corruption(method="black", source="fallback", seed=0) if corrupted
        else Corruption(reason="no_image" if not images else "not_made"),
        chosen=chosen,
        rejected=rejected,
        on_policy="rejected",
        reference=chosen,
        edits=edits,
        error_types=sorted({e.error_type for e in edits}),
        chosen_input_ids=ids_c,
        rejected_input_ids=ids_r,
        chosen_token_mask=mask_c,
        rejected_token_mask=mask_r,
        meta=json.dumps({"builder": "trainer.devdata"}),
    )


def iu_text_pairs(tokenizer, limit: int | None = None, data: Path = SHARED_DATA) -> list[PairRecord]:
    rows = [json.loads(line) for line in (data / "iu_xray_model_generations" / "generations.jsonl").open()]
    out = []
    for row in rows:
        rejected = " ".join(row["generated_report"].split())
        chosen = " ".join(row["reference_report_normalized"].split())
        edits = word_edits(rejected, chosen)
        if not edits:
            continue
        out.append(_record(tokenizer, f"iu-{row['id']}", "report",
                           "Describe the findings in this chest X-ray.", chosen, rejected, edits))
        if limit and len(out) >= limit:
            break
    return out


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def vqa_image_pairs(tokenizer, limit: int | None = None, data: Path = SHARED_DATA) -> list[PairRecord]:
    folder = data / "vqa_rad"
    out = []
    for line in (folder / "qa.jsonl").open():
        row = json.loads(line)
        answer = str(row.get("answer", "")).strip().lower()
        if not row.get("image_png") or answer not in ("yes", "no"):
            continue
        image = Image.open(folder / row["image_png"]).convert("L")
        image.thumbnail((256, 256))
        w, h = image.size
        corrupted = image.copy()
        corrupted.paste(0, (w // 4, h // 4, 3 * w // 4, 3 * h // 4))
        chosen, rejected = answer, "no" if answer == "yes" else "yes"
        edits = [Edit(0, len(rejected), 0, len(chosen), "wrong_answer", rejected, chosen)]
        out.append(_record(
            tokenizer, f"vqa-rad-{row['qid']}", "vqa", row["question"], chosen, rejected, edits,
            images=[ImageRef(_png(image), row["image_png"])],
            corrupted=[ImageRef(_png(corrupted), row["image_png"])],
        ))
        if limit and len(out) >= limit:
            break
    return out


def two_view_pairs(tokenizer, limit: int | None = None, data: Path = SHARED_DATA) -> list[PairRecord]:
    """VQA-RAD pairs with two images of different aspect ratios (the image and a wide crop of it), and
    their corrupted copies: the multi-image, mixed-size case a batch must pad."""
    out = []
    for rec in vqa_image_pairs(tokenizer, limit=limit, data=data):
        views, corrupt = [], []
        for ref in (rec.images[0], rec.corrupted_images[0]):
            image = Image.open(io.BytesIO(ref.bytes))
            w, h = image.size
            wide = image.crop((0, h // 4, w, 3 * h // 4)).resize((w, max(8, h // 3)))
            (views if ref is rec.images[0] else corrupt).extend(
                [ImageRef(ref.bytes, ref.path), ImageRef(_png(wide), f"{ref.path}#wide")])
        out.append(_record(tokenizer, f"{rec.sample_id}-2view", "vqa", rec.prompt,
                           rec.chosen, rec.rejected, rec.edits, images=views, corrupted=corrupt))
    return out


def write_shard(records: list[PairRecord], out_dir: Path, name: str = "shard-00000.parquet") -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(pairs_table(records), out_dir / name, compression="zstd")
    return out_dir
