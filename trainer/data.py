"""Shards (CONTRACT.md section 4) -> model-ready preference batches.

Why this module is careful: a preference loss on edited tokens is only right if each mask bit sits on the
token it was computed for. So the shard's token ids are checked against the model's own tokenizer, and
when they differ (another model, another tokenizer) the masks are re-derived from the character `edits`
through offset mappings, never reused blindly. Prompt and response are tokenized separately so no token
spans the boundary, and image tokens are never truncated.

Layout of a batch of B pairs: 2B rows, chosen rows first then rejected rows, each `prompt + response`
right-padded. Pairs without images run text-only (no image tokens, no pixel values): the chat template
simply gets no image entry, which is how a vision-language model is asked a text-only question. How each
family's extra inputs are padded and concatenated is its adapter's job (models/).
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
from PIL import Image
from torch import Tensor

log = logging.getLogger(__name__)

SHARD_GLOB = "shard-*.parquet"
ROW_COLUMNS = (
    "pair_id",
    "prompt",
    "images",
    "corrupted_images",
    "chosen",
    "rejected",
    "edits",
    "chosen_input_ids",
    "rejected_input_ids",
    "chosen_token_mask",
    "rejected_token_mask",
)


def shard_files(shards_dir: Path) -> list[Path]:
    files = sorted(Path(shards_dir).glob(SHARD_GLOB))
    if not files:
        raise FileNotFoundError(f"no {SHARD_GLOB} in {shards_dir}: is it the OUT_DIR of `build-pairs run`?")
    return files


class PairShards(torch.utils.data.Dataset):
    """Random access to the pair rows of a shard folder; rows stay in Arrow memory until asked for."""

    def __init__(self, shards_dir: Path):
        self.shards_dir = Path(shards_dir)
        tables = []
        for path in shard_files(self.shards_dir):
            table = pq.read_table(path)
            missing = [c for c in ROW_COLUMNS if c not in table.column_names]
            if missing:
                raise ValueError(f"{path.name}: missing column(s) {', '.join(missing)}")
            tables.append(table.select(list(ROW_COLUMNS)))
        self.tables = tables
        self.offsets = [0]
        for t in tables:
            self.offsets.append(self.offsets[-1] + t.num_rows)
        if len(self) == 0:
            raise ValueError(f"{shards_dir}: the shards hold no pairs")

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        shard = next(i for i in range(len(self.tables)) if index < self.offsets[i + 1])
        return self.tables[shard].slice(index - self.offsets[shard], 1).to_pylist()[0]


@dataclass
class EncodedPair:
    """One pair, tokenized for a given model. Response ids end with EOS (edit mask 0 there)."""

    pair_id: str
    prompt_ids: list[int]  # chat-formatted prompt, image tokens already expanded by the processor
    chosen_ids: list[int]
    rejected_ids: list[int]
    chosen_mask: list[int]  # edit masks aligned with the response ids
    rejected_mask: list[int]
    image_inputs: dict[str, Tensor] = field(default_factory=dict)  # clean images (pixel_values, ...)
    corrupt_inputs: dict[str, Tensor] | None = None  # same prompt, corrupted images; None: no visual term
    masks_rederived: bool = False
    teacher_pixels: Tensor | None = None  # [images, 3, H, W] for a MedAlign teacher; None: not asked for


def decode_images(images: list[dict] | None, base: Path, pair_id: str, column: str) -> list[Image.Image]:
    out = []
    for i, ref in enumerate(images or []):
        data = ref.get("bytes")
        if data is None and ref.get("path"):
            path = Path(ref["path"])
            data = (path if path.is_absolute() else base / path).read_bytes()
        if data is None:
            raise ValueError(f"pair {pair_id}: {column}[{i}] has neither bytes nor a readable path")
        out.append(Image.open(io.BytesIO(data)).convert("RGB"))
    return out


def rederive_masks(tokenizer, row: dict) -> tuple[list[int], list[int], list[int], list[int]]:
    """(chosen_ids, rejected_ids, chosen_mask, rejected_mask) for this tokenizer, from the character edits.

    The edits are checked against the texts first; the mask rule itself is the pipeline's
    (pipeline/token_masks.py), so a re-derived mask is the mask `build-pairs run` would have written.
    """
    from pipeline.token_masks import token_masks
    from schemas.pair import Edit

    pair_id = row["pair_id"]
    edits = []
    for k, edit in enumerate(row["edits"] or []):
        cs, ce, rs, re = edit["chosen_start"], edit["chosen_end"], edit["rejected_start"], edit["rejected_end"]
        if not (0 <= cs <= ce <= len(row["chosen"]) and 0 <= rs <= re <= len(row["rejected"])):
            raise ValueError(f"pair {pair_id}: edits[{k}] offsets fall outside chosen/rejected")
        if row["chosen"][cs:ce] != edit["after"] or row["rejected"][rs:re] != edit["before"]:
            raise ValueError(f"pair {pair_id}: edits[{k}] `before`/`after` do not match the text at its offsets")
        edits.append(Edit(**{f: edit[f] for f in Edit.__dataclass_fields__}))
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"pair {pair_id}: token ids differ from the shard and the tokenizer has no offsets")
    return token_masks(tokenizer, row["chosen"], row["rejected"], edits)


class PairEncoder:
    """Turns shard rows into `EncodedPair`s for one model, through its adapter (models/): the prompt is
    rendered and tokenized exactly as the sampler renders it, so the policy is trained on the layout it
    answered in (a shard prompt's `<image>` placeholders are taken out; images enter through the template)."""

    def __init__(self, adapter, base_dir: Path = Path("."), max_length: int | None = None,
                 teacher_processor=None):
        self.adapter = adapter
        self.teacher_processor = teacher_processor
        self.tokenizer = adapter.tokenizer
        self.base_dir = Path(base_dir)
        self.max_length = max_length
        self.eos_id = self.tokenizer.eos_token_id
        self.n_rederived = 0

    def response(self, row: dict) -> tuple[list[int], list[int], list[int], list[int], bool]:
        pair_id = row["pair_id"]
        ids_c = list(self.tokenizer(row["chosen"], add_special_tokens=False).input_ids)
        ids_r = list(self.tokenizer(row["rejected"], add_special_tokens=False).input_ids)
        if ids_c == list(row["chosen_input_ids"]) and ids_r == list(row["rejected_input_ids"]):
            mask_c, mask_r = list(row["chosen_token_mask"]), list(row["rejected_token_mask"])
            for name, ids, mask in (("chosen", ids_c, mask_c), ("rejected", ids_r, mask_r)):
                if len(mask) != len(ids):
                    raise ValueError(f"pair {pair_id}: {name}_token_mask has {len(mask)} entries, ids {len(ids)}")
            return ids_c, ids_r, mask_c, mask_r, False
        if not self.n_rederived:
            log.warning("pair %s: shard token ids differ from this model's tokenizer; re-deriving token masks "
                        "from the character edits (reported once)", pair_id)
        ids_c, ids_r, mask_c, mask_r = rederive_masks(self.tokenizer, row)
        return ids_c, ids_r, mask_c, mask_r, True

    def __call__(self, row: dict) -> EncodedPair | None:
        pair_id = row["pair_id"]
        images = decode_images(row["images"], self.base_dir, pair_id, "images")
        corrupted = decode_images(row["corrupted_images"], self.base_dir, pair_id, "corrupted_images")
        if corrupted and len(corrupted) != len(images):
            raise ValueError(f"pair {pair_id}: {len(corrupted)} corrupted_images for {len(images)} images")
        if images and not self.adapter.vision:
            raise ValueError(f"pair {pair_id}: field 'images': {len(images)} image(s), but the model is text-only")
        text = self.adapter.render_prompt(row["prompt"], len(images))
        prompt_ids, clean = self.adapter.encode_prompt(text, images)
        corrupt = None
        if corrupted:
            corrupt_ids, corrupt = self.adapter.encode_prompt(text, corrupted)
            if corrupt_ids != prompt_ids:
                raise ValueError(f"pair {pair_id}: corrupted images change the prompt's image tokens")
        ids_c, ids_r, mask_c, mask_r, rederived = self.response(row)
        self.n_rederived += rederived
        if self.eos_id is not None:
            ids_c, ids_r, mask_c, mask_r = ids_c + [self.eos_id], ids_r + [self.eos_id], mask_c + [0], mask_r + [0]
        if self.max_length is not None:
            room = self.max_length - len(prompt_ids)
            if room <= 0:
                log.warning("pair %s skipped: prompt is %d tokens (image tokens are never truncated), "
                            "max_length %d", pair_id, len(prompt_ids), self.max_length)
                return None
            ids_c, ids_r, mask_c, mask_r = ids_c[:room], ids_r[:room], mask_c[:room], mask_r[:room]
        teacher = None
        if self.teacher_processor is not None and images:
            teacher = self.teacher_processor(images=images, return_tensors="pt")["pixel_values"]
        return EncodedPair(pair_id, prompt_ids, ids_c, ids_r, mask_c, mask_r, clean, corrupt, rederived, teacher)


@dataclass
class PairBatch:
    """2B rows (chosen rows, then rejected rows) of prompt + response, right-padded.

    `label_pos[i, t]` is the column of row i's response token t; the logits at column `label_pos - 1`
    predict it. `labels` is -100 where a row has no token t.
    """

    pair_ids: list[str]
    input_ids: Tensor  # [2B, L]
    attention_mask: Tensor  # [2B, L]
    label_pos: Tensor  # [2B, R]
    labels: Tensor  # [2B, R]
    response_mask: Tensor  # [2B, R] float: 1 on every real response token
    edit_mask: Tensor  # [2B, R] float: the shard's token masks
    image_inputs: dict[str, Tensor]  # clean images of the 2B rows, in row order
    corrupt_pairs: Tensor  # [B'] indices of the pairs that have corrupted images
    corrupt_inputs: dict[str, Tensor]  # corrupted images of rows (corrupt_pairs, corrupt_pairs + B), in order
    n_rederived: int = 0  # pairs whose masks were re-derived from edits (shard ids != tokenizer ids)
    teacher_pixels: Tensor | None = None  # MedAlign teacher inputs of every pair's images, pair order
    prompt_lens: Tensor | None = None  # [B] prompt length of each pair
    teacher_counts: list[int] | None = None  # images of each pair in teacher_pixels
    image_grids: list[list[tuple[int, int]]] | None = None  # visual-token grid of each image (MedAlign)

    def chosen_image_inputs(self, adapter) -> dict[str, Tensor]:
        """The clean-image inputs of the B chosen rows alone: per-row inputs are the first B rows, per-image
        (or per-patch) inputs the first half, since rows were concatenated chosen first."""
        n = self.num_pairs
        per_row = set(adapter.token_inputs) | set(adapter.sample_inputs)
        return {k: v[:n] if k in per_row else v[: len(v) // 2] for k, v in self.image_inputs.items()}

    @property
    def num_pairs(self) -> int:
        return len(self.pair_ids)

    def to(self, device) -> PairBatch:
        def move(x):
            return {k: v.to(device) for k, v in x.items()} if isinstance(x, dict) else x.to(device)

        return PairBatch(self.pair_ids, *(move(getattr(self, f)) for f in (
            "input_ids", "attention_mask", "label_pos", "labels", "response_mask", "edit_mask",
            "image_inputs", "corrupt_pairs", "corrupt_inputs")), self.n_rederived,
            None if self.teacher_pixels is None else self.teacher_pixels.to(device), self.prompt_lens,
            self.teacher_counts, self.image_grids)


def collate_pairs(pairs: list[EncodedPair | None], adapter) -> PairBatch:
    """Pad a batch; the extra model inputs are batched by the model's adapter (per image, per example or
    per token), so mixed image counts, sizes and text-only pairs share one batch."""
    pairs = [p for p in pairs if p is not None]
    if not pairs:
        raise ValueError("every pair of this batch was skipped (prompt longer than max_length)")
    pad_id = adapter.tokenizer.pad_token_id
    rows = [(p.prompt_ids, p.chosen_ids, p.chosen_mask) for p in pairs]
    rows += [(p.prompt_ids, p.rejected_ids, p.rejected_mask) for p in pairs]
    length = max(len(pr) + len(r) for pr, r, _ in rows)
    resp_len = max(len(r) for _, r, _ in rows)
    n = len(rows)
    input_ids = torch.full((n, length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, length), dtype=torch.long)
    label_pos = torch.ones((n, resp_len), dtype=torch.long)
    labels = torch.full((n, resp_len), -100, dtype=torch.long)
    edit_mask = torch.zeros((n, resp_len))
    for i, (prompt, resp, mask) in enumerate(rows):
        p, r = len(prompt), len(resp)
        input_ids[i, : p + r] = torch.tensor(prompt + resp, dtype=torch.long)
        attention_mask[i, : p + r] = 1
        label_pos[i] = torch.arange(p, p + resp_len).clamp(max=length - 1)
        labels[i, :r] = torch.tensor(resp, dtype=torch.long)
        edit_mask[i, :r] = torch.tensor(mask, dtype=torch.float)
    corrupt_pairs = [i for i, p in enumerate(pairs) if p.corrupt_inputs is not None]
    both = pairs + pairs
    resp = [len(r) for _, r, _ in rows]
    clean = adapter.collate([(p.prompt_ids, p.image_inputs, r) for p, r in zip(both, resp, strict=True)], length)
    corrupt_rows = corrupt_pairs + [i + len(pairs) for i in corrupt_pairs]
    corrupt = adapter.collate([(both[i].prompt_ids, both[i].corrupt_inputs, resp[i]) for i in corrupt_rows],
                              length) if corrupt_rows else {}
    return PairBatch(
        pair_ids=[p.pair_id for p in pairs],
        input_ids=input_ids,
        attention_mask=attention_mask,
        label_pos=label_pos,
        labels=labels,
        response_mask=(labels != -100).float(),
        edit_mask=edit_mask,
        image_inputs=clean,
        corrupt_pairs=torch.tensor(corrupt_pairs, dtype=torch.long),
        corrupt_inputs=corrupt,
        n_rederived=sum(p.masks_rederived for p in pairs),
        teacher_pixels=torch.cat([p.teacher_pixels for p in pairs if p.teacher_pixels is not None])
        if any(p.teacher_pixels is not None for p in pairs) else None,
        prompt_lens=torch.tensor([len(p.prompt_ids) for p in pairs]),
        teacher_counts=[0 if p.teacher_pixels is None else len(p.teacher_pixels) for p in pairs],
        image_grids=[adapter.image_grids(p.image_inputs, p.prompt_ids) if p.teacher_pixels is not None else []
                     for p in pairs] if any(p.teacher_pixels is not None for p in pairs) else None,
    )


def read_manifest_tokenizer(shards_dir: Path) -> str | None:
    path = Path(shards_dir) / "manifest.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("tokenizer")


def batch_schedule(num_pairs: int, batch_size: int, seed: int):
    """Endless batches of pair indices: a fresh seeded shuffle each epoch (so a resume can replay it)."""
    epoch = 0
    while True:
        order = torch.randperm(num_pairs, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        size = min(batch_size, num_pairs)
        for start in range(0, num_pairs - size + 1, size):
            yield order[start : start + size]
        epoch += 1


class BatchStream(torch.utils.data.IterableDataset):
    """The endless, seeded stream of collated batches, from batch number `skip` on.

    Several processes (`world` > 1) draw the same global batches of `batch_size * world` pairs and each
    takes its own `batch_size` slice, so a run on N processes sees exactly the batches of one process with
    N times the batch size. With DataLoader workers, worker k builds batches k, k+n, k+2n, ... and the
    DataLoader takes them in turn, so the order is the same with any number of workers.
    """

    def __init__(self, shards: PairShards, encoder: PairEncoder, batch_size: int, seed: int, skip: int = 0,
                 rank: int = 0, world: int = 1):
        self.shards, self.encoder, self.batch_size, self.seed, self.skip = shards, encoder, batch_size, seed, skip
        self.rank, self.world = rank, world

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        size = self.batch_size * self.world
        if self.world == 1:
            size = min(size, len(self.shards))
        elif size > len(self.shards):
            raise ValueError(f"batch size {self.batch_size} x {self.world} process(es) exceeds the "
                             f"{len(self.shards)} pairs of the shards")
        for k, indices in enumerate(batch_schedule(len(self.shards), size, self.seed)):
            if k >= self.skip and (k - self.skip) % workers == worker:
                mine = indices[self.rank * (size // self.world) : (self.rank + 1) * (size // self.world)]
                yield collate_pairs([self.encoder(self.shards[i]) for i in mine], self.encoder.adapter)
