"""One sample in, its pair rows and reject rows out: the clinical core wrapped in bookkeeping.

Every response ends as exactly one pair or one reject row. Known failures (an empty response, an
unreadable image, no clinical error to edit) become rejects with their own reason code; anything
unexpected becomes an ``internal_error`` reject naming the stage, so one odd sample never stops a run.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from corruptors import seed_for
from corruptors.masks import LesionError, lesion_masks, scaled_margin
from editors.text_pairs import TextPairError, TextPairMaker
from pipeline.config import PipelineConfig
from pipeline.image_stage import ImageError, corrupt_images, load_images
from pipeline.token_masks import load_tokenizer, token_masks
from schemas.pair import Corruption, PairRecord, RejectRecord
from schemas.sample import Sample


class _Reject(Exception):
    def __init__(self, stage: str, reason: str, detail: str):
        super().__init__(detail)
        self.stage, self.reason, self.detail = stage, reason, detail


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def clean_detail(text: str) -> str:
    """One line, without object addresses (``<... at 0x7f..>``) that would make reruns differ."""
    return _ADDRESS.sub("", " ".join(str(text).split()))


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line (for the rejects ledger)."""
    text = clean_detail(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def make_pair_id(sample_id: str, index: int, response: str, reference: str, config_hash: str) -> str:
    """Stable across runs and machines: the same input and configuration give the same id."""
    blob = json.dumps([sample_id, index, response, reference, config_hash], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


class PairBuilder:
    """Builds pairs for samples of one manifest with one configuration (tokenizer loaded once)."""

    def __init__(self, config: PipelineConfig, manifest_dir: str | Path):
        self.config = config
        self.manifest_dir = Path(manifest_dir)
        self.config_hash = config.content_hash()
        model = config.sampler.model
        # the style test reads a local model folder; a served model's name (vllm-server) has none here
        style_model = model if config.text.style_check and model and (Path(model) / "config.json").is_file() else None
        self.text_maker = TextPairMaker(config.text, style_model=style_model)
        self.tokenizer, self.tokenizer_name = load_tokenizer(config.tokenizer)
        self.seconds: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()  # times each stage ran (manifest.json stats)

    @contextmanager
    def _timed(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start
            self.counts[stage] += 1

    # -- one sample ------------------------------------------------------------------------------
    def _prompt_column(self, prompt: str, n_images: int) -> str:
        """The prompt as the policy saw it: with images, one image token per image in front (the
        plain-text convention of TRL's DPOTrainer, so image shards train there unchanged)."""
        if not n_images or not self.config.image.prompt_placeholders:
            return prompt
        token = getattr(self.tokenizer, "image_token", None) or "<image>"
        if token in prompt:
            return prompt
        return token * n_images + "\n" + prompt

    def process(self, sample: Sample, sampled: bool = False,
                provenance: dict | None = None) -> tuple[list[PairRecord], list[RejectRecord]]:
        """``sampled``: the responses came from the configured sampler (else they were replayed);
        ``provenance``: the sampler's record of where they came from (kept in ``meta``)."""
        responses = sample.responses or []
        if not responses:
            detail = ("the sampler returned no responses" if sampled else
                      "the manifest gives no responses and none were sampled (sampler 'replay'); give responses "
                      "in the manifest or choose --sampler and --model")
            return [], [RejectRecord(sample.sample_id, "sample", "no_responses", detail, -1)]
        images = None
        image_failure: _Reject | None = None
        image_info: list[dict] = []
        if sample.images:
            try:
                with self._timed("image_load"):
                    images = load_images(list(sample.images), self.manifest_dir,
                                         allow_absolute=self.config.image.allow_absolute_paths, info=image_info)
            except ImageError as e:
                image_failure = _Reject("image", e.reason, e.detail)
            except Exception as e:  # noqa: BLE001 - one sample must never take the run down
                image_failure = _Reject("image", "internal_error", one_line(e))
            if image_failure is None and self.config.image.enabled and sample.lesions:
                image_failure = self._check_lesions(sample, images)
        pairs: list[PairRecord] = []
        rejects: list[RejectRecord] = []
        for index, response in enumerate(responses):
            stage = "text"
            try:
                if image_failure is not None:
                    raise image_failure
                pairs.append(self._pair(sample, index, response, images, sampled, provenance, image_info))
            except _Reject as r:
                rejects.append(RejectRecord(sample.sample_id, r.stage, r.reason, clean_detail(r.detail), index))
            except Exception as e:  # noqa: BLE001
                stage = getattr(e, "_medpref_stage", stage)
                rejects.append(RejectRecord(sample.sample_id, stage, "internal_error", one_line(e), index))
        return pairs, rejects

    def _check_lesions(self, sample: Sample, images) -> _Reject | None:
        """Degenerate or out-of-image lesion geometry rejects the sample before any text work (the
        corruption stage would reject each response later anyway, after the expensive part)."""
        with self._timed("lesions"):
            try:
                shapes = [pixels.shape[:2] for _, pixels in images]
                lesion_masks(list(sample.lesions), shapes,
                             [scaled_margin(self.config.image.margin_fraction, s) for s in shapes])
            except LesionError as e:
                return _Reject("image", e.reason, str(e))
        return None

    def _pair(self, sample: Sample, index: int, response: str, images, sampled: bool,
              provenance: dict | None = None, image_info: list[dict] | None = None) -> PairRecord:
        cfg = self.config
        if not response.strip():
            raise _Reject("text", "empty_response", "the response is empty or only whitespace")
        if len(response) > cfg.text.max_response_chars:
            raise _Reject("text", "response_too_long",
                          f"{len(response)} characters > text.max_response_chars={cfg.text.max_response_chars}")
        pair_id = make_pair_id(sample.sample_id, index, response, sample.reference, self.config_hash)
        seed = seed_for(pair_id)

        with self._stage("text"):
            try:
                text = self.text_maker.make(response, sample.reference, sample.task, prompt=sample.prompt, seed=seed,
                                            candidates=sample.meta.get("answer_candidates"),
                                            scope=sample.meta.get("reference_scope"))
            except TextPairError as e:
                raise _Reject("text", e.reason, e.detail) from e

        with self._stage("tokens"):
            chosen_ids, rejected_ids, chosen_mask, rejected_mask = token_masks(
                self.tokenizer, text.chosen, text.rejected, text.edits)

        with self._stage("image"):
            clean, corrupted, corruption = self._images(sample, images, text.locations, seed)

        meta = {
            "sampler": cfg.sampler.name if sampled else "replay",
            "model": cfg.sampler.model if sampled else None,
            "sampling": ({"temperature": cfg.sampler.temperature, "top_p": cfg.sampler.top_p,
                          "max_new_tokens": cfg.sampler.max_new_tokens, "num_samples": cfg.sampler.num_samples,
                          "seed": cfg.sampler_seed} if sampled else None),
            "seed": cfg.seed,
            "response_index": index,
            "extractor": cfg.text.extractor,
            "tokenizer": self.tokenizer_name,
            "config_hash": self.config_hash,
            "manifest_meta": sample.meta,
            "notes": text.notes,
        }
        if provenance is not None:
            meta["sampler_provenance"] = provenance
        if image_info and any(image_info):  # DICOM: window used, photometric, pixel spacing (mm) per image
            meta["image_info"] = image_info
        return PairRecord(
            pair_id=pair_id,
            sample_id=sample.sample_id,
            task=sample.task,
            prompt=self._prompt_column(sample.prompt, len(clean)),
            images=clean,
            corrupted_images=corrupted,
            corruption=corruption,
            chosen=text.chosen,
            rejected=text.rejected,
            on_policy=text.on_policy,
            reference=sample.reference,
            edits=list(text.edits),
            error_types=list(text.error_types),
            chosen_input_ids=[int(t) for t in chosen_ids],
            rejected_input_ids=[int(t) for t in rejected_ids],
            chosen_token_mask=[int(m) for m in chosen_mask],
            rejected_token_mask=[int(m) for m in rejected_mask],
            meta=json.dumps(meta, sort_keys=True, ensure_ascii=False, default=str),
        )

    @contextmanager
    def _stage(self, stage: str):
        """Time a stage and tag an unexpected exception with it (for the internal_error reject)."""
        with self._timed(stage):
            try:
                yield
            except _Reject:
                raise
            except Exception as e:
                if not hasattr(e, "_medpref_stage"):
                    e._medpref_stage = stage  # type: ignore[attr-defined]
                raise

    def _images(self, sample: Sample, images, locations, seed: int):
        """Clean image refs, corrupted image refs, and the corruption record (with a reason when none)."""
        if not sample.images:
            return [], [], Corruption(seed=seed, reason="text-only sample: no image to corrupt")
        clean = [ref for ref, _ in images]
        if not self.config.image.enabled:
            return clean, [], Corruption(seed=seed, reason="image corruption disabled (image.enabled: false)")
        img = self.config.image
        try:
            corrupted, corruption = corrupt_images(
                [pixels for _, pixels in images], list(sample.lesions), list(locations or []),
                method=img.method, margin_fraction=img.margin_fraction,
                seed=seed, sigma=img.sigma, fallback_sigma=img.fallback_sigma)
        except ImageError as e:
            raise _Reject("image", e.reason, e.detail) from e
        return clean, corrupted, corruption
