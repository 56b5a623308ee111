"""Image paths and the manifest's folder: relative paths may not climb out; absolute ones are allowed
by the contract unless `image.allow_absolute_paths` is false."""

from __future__ import annotations

import shutil

from pipeline.config import load_config
from pipeline.process import PairBuilder
from schemas.sample import Sample


def _sample(path: str, reference: str) -> Sample:
    return Sample(sample_id="s1", task="report", prompt="Describe.", images=[path], reference=reference,
                  responses=["no pleural effusion . small left pneumothorax ."])


def test_absolute_paths_follow_the_config(tmp_path, shared):
    img = shared("nih_cxr14_rexrank_model_reports", "images")
    first = sorted(img.glob("*.png"))[0]
    outside = tmp_path / "elsewhere" / "x.png"
    outside.parent.mkdir()
    shutil.copy(first, outside)
    manifest_dir = tmp_path / "manifest"
    manifest_dir.mkdir()
    sample = _sample(str(outside), "No pneumothorax. Small left pleural effusion.")

    pairs, rejects = PairBuilder(load_config(None, {}), manifest_dir).process(sample)
    assert len(pairs) == 1 and not rejects and pairs[0].images[0].bytes

    strict = load_config(None, {"image.allow_absolute_paths": False})
    pairs, rejects = PairBuilder(strict, manifest_dir).process(sample)
    assert not pairs and [r.reason for r in rejects] == ["path_outside_manifest"]

    climbing = _sample("../elsewhere/x.png", "No pneumothorax.")
    pairs, rejects = PairBuilder(load_config(None, {}), manifest_dir).process(climbing)
    assert not pairs and [r.reason for r in rejects] == ["path_outside_manifest"]
