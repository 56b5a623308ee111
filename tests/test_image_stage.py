"""pipeline.image_stage: loading manifest images and corrupting them, on the real shared data."""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from data_paths import SHARED as DATA  # noqa: E402 - the full shared data, else the committed excerpts
from PIL import Image

from corruptors import seed_for
from corruptors.png import decode_png
from pipeline.image_stage import ImageError, corrupt_images, load_images
from schemas.pair import CORRUPTION_TYPE, IMAGE_TYPE
from schemas.sample import Lesion

TBX = DATA / "tbx11k_samples"
NIH_DIRS = [DATA / "nih_cxr14_rexrank_model_reports", DATA / "nih_cxr14_txv_test_images"]
VQA = DATA / "vqa_rad"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    return path


@pytest.fixture(scope="module")
def tbx():
    """(clean array, TB lesion) loaded the way the pipeline loads it."""
    coco = json.loads((_need(TBX) / "annotations_coco.json").read_text())
    ann = coco["annotations"][0]
    info = next(im for im in coco["images"] if im["id"] == ann["image_id"])
    x, y, w, h = ann["bbox"]
    [(_, arr)] = load_images([f"imgs/{info['file_name']}"], TBX)
    return arr, Lesion(label="ActiveTuberculosis", box=[x, y, x + w, y + h])


@pytest.fixture(scope="module")
def nih():
    out = []
    for d in NIH_DIRS:
        if (d / "images").exists():
            paths = sorted(f"images/{p.name}" for p in (d / "images").glob("*.png"))
            out += [(d, p, arr) for p, (_, arr) in zip(paths, load_images(paths, d), strict=True)]
    if not out:
        pytest.skip("no NIH images in shared data")
    return out


def _outside_changed(clean: np.ndarray, ref, mask_png: bytes) -> tuple[np.ndarray, np.ndarray, int]:
    out = decode_png(ref.bytes)
    mask = decode_png(mask_png) > 0
    assert out.shape == clean.shape and out.dtype == np.uint8
    return out, mask, int(np.count_nonzero((out != clean)[~mask]))


# --------------------------------------------------------------------------------------------- loading


def test_png_files_keep_their_bytes_and_mode():
    d = _need(NIH_DIRS[1])
    [(ref, arr)] = load_images(["images/00000001_000.png"], d)
    assert ref.path == "images/00000001_000.png"
    assert ref.bytes == (d / "images" / "00000001_000.png").read_bytes()
    assert arr.shape == (512, 512) and arr.dtype == np.uint8
    [(ref, arr)] = load_images(["imgs/tb/tb0005.png"], _need(TBX))
    assert arr.shape == (512, 512, 3) and Image.open(io.BytesIO(ref.bytes)).mode == "RGB"


def test_non_png_and_16_bit_images_are_reencoded_keeping_gray(tmp_path):
    src = np.asarray(Image.open(_need(NIH_DIRS[1]) / "images" / "00027426_000.png"))
    Image.fromarray(src).save(tmp_path / "x.jpg", quality=90)
    Image.fromarray(src.astype(np.uint16) * 200 + 7).save(tmp_path / "x16.png")
    Image.fromarray(src).convert("P").save(tmp_path / "pal.png")
    (jpg_ref, jpg), (ref16, a16), (pal_ref, pal) = load_images(["x.jpg", "x16.png", "pal.png"], tmp_path)
    for ref, arr in ((jpg_ref, jpg), (ref16, a16), (pal_ref, pal)):
        pil = Image.open(io.BytesIO(ref.bytes))
        assert pil.format == "PNG" and pil.mode == "L" and arr.ndim == 2
        assert np.array_equal(np.asarray(pil), arr), "the bytes and the pixels must be the same image"
    assert np.array_equal(jpg, np.asarray(Image.open(tmp_path / "x.jpg")))
    assert a16.min() == 0 and a16.max() == 255 and np.corrcoef(a16.ravel(), src.ravel())[0, 1] > 0.999
    assert np.array_equal(pal, src)


@pytest.mark.parametrize("kind", ["missing", "truncated", "text", "empty", "directory"])
def test_unreadable_files_are_a_typed_one_line_reject(tmp_path, kind):
    real = (_need(NIH_DIRS[1]) / "images" / "00000001_000.png").read_bytes()
    name = {"directory": "sub"}.get(kind, "bad.png")
    if kind == "truncated":
        (tmp_path / name).write_bytes(real[: len(real) // 2])
    elif kind == "text":
        (tmp_path / name).write_text("not an image\nat all")
    elif kind == "empty":
        (tmp_path / name).write_bytes(b"")
    elif kind == "directory":
        (tmp_path / name).mkdir()
    with pytest.raises(ImageError) as err:
        load_images([name], tmp_path)
    assert err.value.reason == "image_unreadable"
    assert name in err.value.detail and "\n" not in err.value.detail


def test_paths_escaping_the_manifest_folder_are_refused_unread(tmp_path):
    manifest_dir = tmp_path / "manifest"
    manifest_dir.mkdir()
    real = _need(NIH_DIRS[1]) / "images" / "00000001_000.png"
    (tmp_path / "outside.png").write_bytes(real.read_bytes())
    for path in ("../outside.png", "images/../../outside.png", "../never-existed.png"):
        with pytest.raises(ImageError) as err:
            load_images([path], manifest_dir)
        # "never-existed" proves the decision is made before any file access
        assert err.value.reason == "path_outside_manifest" and path in err.value.detail
    # absolute paths are allowed by the manifest contract, unless the caller confines reads
    assert load_images([str(real)], manifest_dir)[0][0].path == str(real)
    with pytest.raises(ImageError) as err:
        load_images([str(real)], manifest_dir, allow_absolute=False)
    assert err.value.reason == "path_outside_manifest"


def test_a_symlink_out_of_the_manifest_folder_is_refused_like_dotdot(tmp_path):
    manifest_dir = tmp_path / "manifest"
    (manifest_dir / "data").mkdir(parents=True)
    os.symlink(_need(NIH_DIRS[1]) / "images", manifest_dir / "images")  # a folder link pointing outside
    os.symlink(NIH_DIRS[1] / "images" / "00027426_000.png", manifest_dir / "x.png")  # a file link
    for path in ("images/00027426_000.png", "x.png"):
        with pytest.raises(ImageError) as err:
            load_images([path], manifest_dir)
        assert err.value.reason == "path_outside_manifest" and path in err.value.detail
    # a link that stays inside the folder is fine, and so is the absolute path of the real file
    (manifest_dir / "data" / "a.png").write_bytes((NIH_DIRS[1] / "images" / "00027426_000.png").read_bytes())
    os.symlink("data", manifest_dir / "alias")
    [(ref, arr)] = load_images(["alias/a.png"], manifest_dir)
    assert arr.shape == (512, 512) and ref.path == "alias/a.png"
    real = str(NIH_DIRS[1] / "images" / "00027426_000.png")
    assert load_images([real], manifest_dir)[0][1].shape == (512, 512)


# ------------------------------------------------------------------------------------------ corrupting


def test_annotation_mask_noise_on_the_tb_lesion(tbx):
    clean, lesion = tbx
    seed = seed_for("tbx-pair-0")
    refs, c = corrupt_images([clean], [lesion], [], seed=seed)
    assert (c.method, c.source, c.seed, c.reason) == ("noise", "annotation", seed, None)
    out, mask, outside = _outside_changed(clean, refs[0], c.masks[0])
    assert outside == 0
    x1, y1, x2, y2 = lesion.box
    m = 8  # the default margin, 1.6% of the 512 px side
    assert c.regions == [[int(x1) - m, int(y1) - m, int(np.ceil(x2)) + m, int(np.ceil(y2)) + m]]
    assert c.mask_fraction == pytest.approx(mask.mean())
    w, h = x2 - x1, y2 - y1
    core = slice(int(y1 + h / 4), int(y2 - h / 4)), slice(int(x1 + w / 4), int(x2 - w / 4))
    assert np.abs(out.astype(int) - clean.astype(int))[core].mean() >= 8  # FiRe-MPO figure
    again, _ = corrupt_images([clean], [lesion], [], seed=seed)
    other, _ = corrupt_images([clean], [lesion], [], seed=seed + 1)
    assert again[0].bytes == refs[0].bytes != other[0].bytes


def test_the_record_fits_the_pair_schema(tbx):
    clean, lesion = tbx
    refs, c = corrupt_images([clean], [lesion], [], seed=3)
    pa.array([asdict(c)], type=CORRUPTION_TYPE)
    pa.array([asdict(r) for r in refs], type=IMAGE_TYPE)


def test_report_zones_land_on_the_correct_side_of_real_nih_images(nih):
    """Patient right = image left on PA/AP views: the right lower zone is on the image's left half,
    the left lower zone on its right half, and the two are far apart."""
    for _, path, clean in nih:
        w = clean.shape[1]
        centroid = {}
        for side in ("right", "left"):
            refs, c = corrupt_images([clean], [], [{"laterality": side, "zone": "lower"}], seed=1)
            assert c.source == "report"
            out, mask, outside = _outside_changed(clean, refs[0], c.masks[0])
            assert outside == 0
            assert 0.02 < c.mask_fraction < 0.35, path
            xs = np.nonzero(mask)[1]
            share = float(np.mean(xs < w / 2)) if side == "right" else float(np.mean(xs >= w / 2))
            assert share >= 0.8, (
                f"{path}: only {share:.0%} of the {side} lower-zone mask on the expected half"
            )
            centroid[side] = xs.mean()
        assert centroid["right"] < w / 2 < centroid["left"], path
        assert centroid["left"] - centroid["right"] > w / 4, path


def test_bilateral_and_unlateralised_findings_cover_both_lungs(nih):
    _, _, clean = nih[0]
    for loc in ({"laterality": "bilateral", "zone": "upper"}, {"zone": "lower"}):
        _, c = corrupt_images([clean], [], [loc], seed=1)
        assert len(c.regions) == 2
        assert min(r[0] for r in c.regions) < clean.shape[1] / 2 < max(r[2] for r in c.regions)


def test_fallback_is_whole_image_noise_sigma_12(nih):
    _, _, clean = nih[0]
    refs, c = corrupt_images([clean], [], [], method="black", seed=7)
    assert (c.source, c.method, c.mask_fraction) == ("fallback", "noise", 1.0)
    h, w = clean.shape
    assert c.regions == [[0, 0, w, h]]
    diff = decode_png(refs[0].bytes).astype(int) - clean.astype(int)
    mid = (clean > 40) & (clean < 215)
    assert 11.0 < diff[mid].std() < 13.0


def test_bad_lesions_reject_the_sample_with_a_reason(tbx):
    clean, _ = tbx
    for lesion in (
        Lesion(box=[600, 600, 700, 700]),
        Lesion(box=[50, 50, 50, 80]),
        Lesion(polygon=[[1, 1], [2, 2]]),
    ):
        with pytest.raises(ImageError) as err:
            corrupt_images([clean], [lesion], [], seed=1)
        assert err.value.reason == "bad_lesion" and "lesions[0]" in err.value.detail


def test_contralateral_refusal_is_recorded_not_raised(tbx):
    clean, lesion = tbx
    locs = [{"laterality": "left", "zone": "upper", "diseased_sides": ["left", "right"]}]
    refs, c = corrupt_images([clean], [lesion], locs, method="inpaint_contralateral", seed=1)
    assert refs == [] and c.reason == "contralateral_diseased" and c.source == "annotation"
    refs, c = corrupt_images([clean], [lesion], [{"laterality": "left", "zone": "upper"}],
                             method="inpaint_contralateral", seed=1)  # fmt: skip
    assert len(refs) == 1 and c.reason is None


def test_multi_image_sample_mixes_sources_per_image(tbx, nih):
    clean, lesion = tbx
    _, _, other = nih[0]
    refs, c = corrupt_images([clean, other], [lesion], [], method="inpaint", seed=2)
    assert c.source == "annotation,fallback" and c.method == "inpaint" and len(c.masks) == len(refs) == 2
    for img, ref, m in zip((clean, other), refs, c.masks, strict=True):
        assert _outside_changed(img, ref, m)[2] == 0


def test_bad_calls_fail_clearly(tbx):
    clean, lesion = tbx
    with pytest.raises(ValueError, match="valid methods"):
        corrupt_images([clean], [lesion], [], method="smudge", seed=1)
    with pytest.raises(ValueError, match="zone"):
        corrupt_images([clean], [lesion], [{"zone": "knee"}], seed=1)
    refs, c = corrupt_images([], [], [], seed=1)
    assert refs == [] and c.reason == "no_image"


# ---------------------------------------------------------------------------- figures on shared data


def _vqa_chest(every: int) -> list[str]:
    rows = [json.loads(line) for line in (_need(VQA) / "qa.jsonl").read_text().splitlines()]
    paths = sorted({r["image_png"] for r in rows if r.get("image_png")})
    return paths[::every]


def _check_dataset(cases, methods):
    """cases: (clean, lesions, locations); every corrupted image same size, 0 outside changes."""
    for clean, lesions, locs in cases:
        for method in methods:
            refs, c = corrupt_images([clean], lesions, locs, method=method, seed=11)
            if c.reason:  # a refusal (contralateral) makes no image; nothing to check
                continue
            assert _outside_changed(clean, refs[0], c.masks[0])[2] == 0, method


FAST_METHODS = ["noise", "blur", "black", "inpaint"]
ALL_METHODS = FAST_METHODS + ["inpaint_ns", "inpaint_contralateral"]


def test_figures_on_tbx_nih_and_a_vqa_rad_sample(tbx, nih):
    clean, lesion = tbx
    locs = [{"laterality": "right", "zone": "middle"}]
    cases = [(clean, [lesion], [])] + [(a, [], locs) for _, _, a in nih[:3]]
    [(_, vqa)] = load_images(_vqa_chest(40)[:1], VQA)
    cases.append((vqa, [], locs))
    _check_dataset(cases, FAST_METHODS)


@pytest.mark.slow
def test_figures_on_every_shared_chest_image(tbx, nih):
    clean, lesion = tbx
    locs = [{"laterality": "left", "zone": "hilum"}, {"laterality": "right", "zone": "costophrenic"}]
    cases = [(clean, [lesion], [])] + [(a, [], locs) for _, _, a in nih]
    cases += [(a, [], locs if i % 2 else []) for i, (_, a) in enumerate(load_images(_vqa_chest(1), VQA))]
    _check_dataset(cases, ALL_METHODS)
