"""Corruptors, lesion masks, lung fields and the gallery, on real shared chest X-rays."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from data_paths import SHARED as DATA  # noqa: E402 - the full shared data, else the committed excerpts
from PIL import Image

from corruptors import (
    CORRUPTORS,
    CorruptionContext,
    CorruptionRefused,
    Corruptor,
    CorruptorUnavailable,
    get_corruptor,
    seed_for,
)
from corruptors.anatomy import ZONES, diseased_sides, location_boxes
from corruptors.lungs import estimate_lung_fields
from corruptors.masks import LesionError, lesion_masks, rasterise_box, rasterise_polygon
from corruptors.png import decode_png, encode_mask, encode_png
from report.gallery import write_gallery
from schemas.pair import Corruption, ImageRef, PairRecord, pairs_table
from schemas.sample import Lesion

TBX = DATA / "tbx11k_samples"
NIH_DIRS = [
    DATA / "nih_cxr14_rexrank_model_reports" / "images",
    DATA / "nih_cxr14_txv_test_images" / "images",
]


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    return path


def _read_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def tbx():
    """The TBX11K tuberculosis image (RGB) and its radiologist box as [x1, y1, x2, y2]."""
    coco = json.loads((_need(TBX) / "annotations_coco.json").read_text())
    ann = coco["annotations"][0]
    info = next(im for im in coco["images"] if im["id"] == ann["image_id"])
    x, y, w, h = ann["bbox"]
    return _read_rgb(TBX / "imgs" / info["file_name"]), [x, y, x + w, y + h]


@pytest.fixture(scope="module")
def nih():
    paths = sorted(p for d in NIH_DIRS if d.exists() for p in d.glob("*.png"))
    if not paths:
        pytest.skip(f"no NIH images under {NIH_DIRS}")
    return {p.name: np.asarray(Image.open(p)) for p in paths}


def _core(box):
    """The central half (in each dimension) of a lesion box: where the lesion certainly is."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    return slice(int(y1 + h / 4), int(y2 - h / 4)), slice(int(x1 + w / 4), int(x2 - w / 4))


# ------------------------------------------------------------------------------------------- registry


def test_unknown_name_lists_every_valid_name():
    with pytest.raises(ValueError) as err:
        get_corruptor("smudge")
    assert "smudge" in str(err.value)
    for name in CORRUPTORS:
        assert name in str(err.value)


def test_issue_methods_are_registered():
    expected = {
        "noise",
        "blur",
        "black",
        "inpaint",
        "inpaint_ns",
        "inpaint_contralateral",
        "inpaint_diffusion",
    }
    assert expected <= set(CORRUPTORS)


def test_seed_for_is_stable_and_fits_int64():
    assert seed_for("pair-1") == seed_for("pair-1") != seed_for("pair-2")
    assert 0 <= seed_for("pair-1") < 2**63


# ---------------------------------------------------------------------------------- the one contract


def _contract_case(kind: str, tbx, nih):
    if kind == "rgb_annotated":  # TBX11K RGB image, its real TB box, grown like the pipeline does
        img, box = tbx
        return img, rasterise_box(box, img.shape[:2], 16, "tbx")[0]
    if kind == "gray_polygon":  # NIH grayscale, a polygon in the patient's right lower zone
        img = nih["00000001_000.png"]
        poly = [[110, 250], [190, 240], [215, 320], [150, 345], [105, 310]]
        return img, rasterise_polygon(poly, img.shape, 8, "poly")[0]
    img = nih["00027426_000.png"]  # a mask clipped at the image corner
    return img, rasterise_box([-30, -30, 60, 45], img.shape, 16, "corner")[0]


@pytest.mark.parametrize("kind", ["rgb_annotated", "gray_polygon", "corner"])
@pytest.mark.parametrize("name", sorted(CORRUPTORS))
def test_corruptor_contract(name, kind, tbx, nih):
    """Every registered corruptor: same shape/dtype, input untouched, outside bytes identical,
    something hidden inside, and the same bytes again under the same seed."""
    try:
        corruptor = get_corruptor(name)
    except CorruptorUnavailable as e:
        pytest.skip(f"{name} unavailable here: {e}")
    assert isinstance(corruptor, Corruptor)
    img, mask = _contract_case(kind, tbx, nih)
    img_before, mask_before = img.copy(), mask.copy()
    try:
        out = corruptor(img, mask, np.random.default_rng(11), CorruptionContext())
    except CorruptionRefused as e:
        # only the contralateral fill may decline, and only where the mirror leaves the image
        assert (name, kind, e.reason) == ("inpaint_contralateral", "corner", "contralateral_off_image")
        return
    assert np.array_equal(img, img_before) and np.array_equal(mask, mask_before), "input mutated"
    assert out is not img and out.shape == img.shape and out.dtype == img.dtype == np.uint8
    assert np.array_equal(out[~mask], img[~mask]), "pixels outside the mask changed"
    assert np.abs(out[mask].astype(int) - img[mask].astype(int)).mean() > 2.0, "mask content not hidden"
    again = corruptor(img, mask, np.random.default_rng(11), CorruptionContext())
    assert np.array_equal(out, again), "not deterministic under the same seed"


# ------------------------------------------------------------------------------------- the corruptors


def test_noise_is_seeded_and_has_the_requested_sigma(tbx):
    img, box = tbx
    mask = rasterise_box(box, img.shape[:2], 16, "tbx")[0]
    noise = get_corruptor("noise", sigma=45)
    a = noise(img, mask, np.random.default_rng(1))
    assert np.array_equal(a, noise(img, mask, np.random.default_rng(1)))
    assert not np.array_equal(a, noise(img, mask, np.random.default_rng(2)))
    gray = img[..., 0].astype(int)
    mid = mask & (gray > 100) & (gray < 155)  # far enough from 0 and 255 that clipping is rare
    # E|N(0, 45)| = 45 * sqrt(2 / pi) = 35.9
    assert abs(np.abs(a[..., 0].astype(int) - gray)[mid].mean() - 35.9) < 4
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all(), "a gray RGB image stays gray"


def test_noise_mean_change_in_the_annotated_lesion_core(tbx):
    img, box = tbx
    mask = rasterise_box(box, img.shape[:2], 16, "tbx")[0]
    out = get_corruptor("noise")(img, mask, np.random.default_rng(seed_for("tbx-1")))
    change = np.abs(out.astype(int) - img.astype(int))[_core(box)].mean()
    assert change >= 8


def test_blur_removes_texture(nih):
    img = nih["00000013_043.png"]
    mask = rasterise_box([250, 300, 450, 550], img.shape, 0, "b")[0]
    out = get_corruptor("blur")(img, mask, np.random.default_rng(0))
    inner = slice(320, 530), slice(270, 430)
    lap = lambda a: cv2.Laplacian(a.astype(np.float64), cv2.CV_64F)[inner].var()  # noqa: E731
    assert lap(out) < 0.05 * lap(img)


@pytest.mark.parametrize("name", ["inpaint", "inpaint_ns"])
def test_inpaint_at_reduced_resolution_leaks_no_lesion_pixel(name, nih):
    """A large (downsampled) mask over a painted white 'lesion': the fill comes from the
    surroundings only, so no filled pixel is brighter than the brightest pixel around the mask."""
    img = nih["00000013_027.png"].copy()
    mask = rasterise_box([200, 250, 520, 700], img.shape, 16, "big")[0]
    img[mask] = 255
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool) & ~mask
    out = get_corruptor(name)(img, mask, np.random.default_rng(0))
    assert out[mask].max() <= img[ring].max() + 1
    assert np.array_equal(out[~mask], img[~mask])


def test_contralateral_copies_the_mirrored_healthy_lung(tbx):
    img, box = tbx
    mask = rasterise_box(box, img.shape[:2], 16, "tbx")[0]
    lungs = estimate_lung_fields(img)
    out = get_corruptor("inpaint_contralateral")(
        img, mask, np.random.default_rng(0), CorruptionContext(lungs=lungs)
    )
    cols = np.clip(np.rint(2 * lungs.midline - np.arange(img.shape[1])).astype(int), 0, img.shape[1] - 1)
    mirror = img[:, cols]

    def highpass(a):
        g = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float64)
        return g - cv2.GaussianBlur(g, (0, 0), 3)

    inner = cv2.erode(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    corr_mirror = np.corrcoef(highpass(out)[inner], highpass(mirror)[inner])[0, 1]
    corr_lesion = np.corrcoef(highpass(out)[inner], highpass(img)[inner])[0, 1]
    assert corr_mirror > 0.8 and corr_lesion < 0.3


def test_contralateral_refuses_when_the_donor_side_is_diseased(tbx):
    img, box = tbx  # the TB lesion is in the patient's LEFT upper zone (the image's right)
    mask = rasterise_box(box, img.shape[:2], 16, "tbx")[0]
    fill = get_corruptor("inpaint_contralateral")
    with pytest.raises(CorruptionRefused) as err:
        fill(img, mask, np.random.default_rng(0), CorruptionContext(diseased_sides=frozenset({"right"})))
    assert err.value.reason == "contralateral_diseased"
    out = fill(img, mask, np.random.default_rng(0), CorruptionContext(diseased_sides=frozenset({"left"})))
    assert np.array_equal(out[~mask], img[~mask])


def test_contralateral_refuses_a_mask_across_the_midline(nih):
    img = nih["00000001_000.png"]
    mid = int(estimate_lung_fields(img).midline)
    mask = rasterise_box([mid - 60, 200, mid + 60, 300], img.shape, 0, "mid")[0]
    with pytest.raises(CorruptionRefused) as err:
        get_corruptor("inpaint_contralateral")(img, mask, np.random.default_rng(0))
    assert err.value.reason == "contralateral_straddles_midline"


def test_diffusion_needs_a_local_folder_and_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDPREF_INPAINT_MODEL", raising=False)
    with pytest.raises(CorruptorUnavailable, match="model_dir"):
        get_corruptor("inpaint_diffusion")
    missing = tmp_path / "no-such-model"
    with pytest.raises(CorruptorUnavailable, match="no-such-model"):
        get_corruptor("inpaint_diffusion", model_dir=missing)


def test_diffusion_without_the_package_says_so(tmp_path):
    import importlib.util

    if importlib.util.find_spec("diffusers") is not None:
        pytest.skip("diffusers is installed here")
    (tmp_path / "model_index.json").write_text("{}")
    with pytest.raises(CorruptorUnavailable, match="diffusers"):
        get_corruptor("inpaint_diffusion", model_dir=tmp_path)


# ------------------------------------------------------------------------------------------ the masks


def test_box_partly_outside_is_clipped():
    mask, region = rasterise_box([-20, -10, 30.2, 40], (80, 100), 0, "b")
    assert region == (0, 0, 31, 40) and mask.sum() == 31 * 40 and mask[0, 0]
    mask, region = rasterise_box([90, 70, 130, 95], (80, 100), 0, "b")
    assert region == (90, 70, 100, 80) and mask.sum() == 10 * 10 and mask[79, 99]


def test_margin_grows_the_box_and_stops_at_the_edge():
    mask, region = rasterise_box([40, 30, 50, 40], (80, 100), 5, "b")
    assert region == (35, 25, 55, 45) and mask.sum() == 400
    _, region = rasterise_box([2, 3, 10, 10], (80, 100), 16, "b")
    assert region == (0, 0, 26, 26)


@pytest.mark.parametrize(
    "box, why",
    [
        ([10, 10, 10, 20], "zero or negative area"),
        ([20, 10, 10, 30], "zero or negative area"),
        ([10, 20, 30, 20], "zero or negative area"),
        ([200, 200, 300, 300], "entirely outside"),
        ([-50, -50, -1, -1], "entirely outside"),
        ([100, 0, 120, 10], "entirely outside"),
        ([0, 0, float("nan"), 5], "non-finite"),
        ([1, 2, 3], "must be [x1, y1, x2, y2]"),
        (["a", 0, 1, 1], "non-numeric"),
    ],
)
def test_degenerate_boxes_are_rejected_with_a_reason(box, why):
    with pytest.raises(LesionError) as err:
        # model_construct: the geometry as another importer might hand it over, unvalidated
        lesion_masks(
            [Lesion.model_construct(label="Nodule", box=box, polygon=None, image=0)], [(80, 100)], 16
        )
    assert err.value.reason == "bad_lesion"
    assert why in err.value.detail and "lesions[0] (Nodule)" in err.value.detail
    assert "\n" not in err.value.detail


def test_polygon_at_the_edge_is_clipped_and_grown():
    poly = [[-10, 20], [30, 5], [40, 60], [-5, 70]]
    mask, region = rasterise_polygon(poly, (80, 100), 0, "p")
    assert mask[:, 0].any() and region[0] == 0
    grown, big = rasterise_polygon(poly, (80, 100), 6, "p")
    assert (grown | mask).sum() == grown.sum() > mask.sum()  # grown contains the polygon
    assert big[2] >= region[2] + 5 and big[3] >= region[3] + 5


@pytest.mark.parametrize(
    "poly, why",
    [
        ([[0, 0], [10, 10]], "at least 3"),
        ([[0, 0], [5, 5], [10, 10]], "zero area"),
        ([[200, 200], [220, 200], [210, 230]], "entirely outside"),
        ([[0, 0], [10, float("inf")], [5, 5]], "non-finite"),
        ([[0, 0], [10], [5, 5]], "must be [x, y]"),
    ],
)
def test_degenerate_polygons_are_rejected_with_a_reason(poly, why):
    with pytest.raises(LesionError) as err:
        lesion_masks([Lesion(polygon=poly)], [(80, 100)], 0)
    assert err.value.reason == "bad_lesion" and why in err.value.detail


def test_lesion_without_geometry_or_with_a_bad_image_index_is_rejected():
    with pytest.raises(LesionError, match="neither a box nor a polygon"):
        lesion_masks([Lesion(label="Mass")], [(80, 100)], 0)
    with pytest.raises(LesionError, match="image index 1"):
        lesion_masks([Lesion(box=[1, 1, 5, 5], image=1)], [(80, 100)], 0)


def test_real_chestx_det_polygons_are_covered():
    path = _need(DATA / "chestx_det_annotations" / "annotations.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()[:60]]
    polys = [(p, b) for r in rows for p, b in zip(r["polygons"], r["boxes"], strict=False) if len(p) >= 3][
        :25
    ]
    assert polys
    for poly, box in polys:
        mask, region = rasterise_polygon(poly, (1024, 1024), 16, "chestx-det")
        pts = np.clip(np.rint(np.asarray(poly)).astype(int), 0, 1023)
        assert mask[pts[:, 1], pts[:, 0]].all(), "a polygon vertex is outside its own mask"
        x1, y1, x2, y2 = (int(v) for v in box)
        assert region[0] <= max(0, x1 - 15) and region[2] >= min(1024, x2 + 15)
        assert region[1] <= max(0, y1 - 15) and region[3] >= min(1024, y2 + 15)


# ------------------------------------------------------------------------------ lung fields, anatomy


def test_lung_fields_on_real_nih_images(nih):
    for name, img in nih.items():
        lf = estimate_lung_fields(img)
        h, w = img.shape
        assert lf.method == "fitted", name
        assert 0.35 * w <= lf.midline <= 0.65 * w, name
        rx1, ry1, rx2, ry2 = lf.right
        lx1, ly1, lx2, ly2 = lf.left
        # patient right lung on the image's left, patient left lung on the image's right
        assert rx2 <= lf.midline <= lx1, name
        assert lf.side_of((rx1 + rx2) / 2) == "right" and lf.side_of((lx1 + lx2) / 2) == "left"
        strip = img[max(ry1, ly1) : min(ry2, ly2), int(lf.midline - 0.03 * w) : int(lf.midline + 0.03 * w)]
        for x1, y1, x2, y2 in (lf.right, lf.left):
            assert (x2 - x1) >= 0.15 * w and (y2 - y1) >= 0.3 * h, name
            assert img[y1:y2, x1:x2].mean() < strip.mean(), (
                f"{name}: lung box not darker than the mediastinum"
            )


def test_report_zone_finds_the_annotated_tb_lesion(tbx):
    """The TB box lies in the patient's left upper zone; mapping that anatomy onto the estimated lung
    fields must cover it, and the patient's right upper zone must not."""
    img, box = tbx
    lungs = estimate_lung_fields(img)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2

    def covers(loc):
        return any(x1 <= cx < x2 and y1 <= cy < y2 for x1, y1, x2, y2 in location_boxes(loc, lungs))

    assert covers({"laterality": "left", "zone": "upper"})
    assert covers({"laterality": "left", "zone": None})
    assert not covers({"laterality": "right", "zone": "upper"})
    assert not covers({"laterality": "left", "zone": "lower"})


def test_every_zone_maps_inside_the_image(nih):
    img = nih["00000013_043.png"]
    lungs = estimate_lung_fields(img)
    for zone in ZONES:
        for lat in ("left", "right", "bilateral", None):
            boxes = location_boxes({"laterality": lat, "zone": zone}, lungs)
            assert boxes, (zone, lat)
            for x1, y1, x2, y2 in boxes:
                assert 0 <= x1 < x2 <= img.shape[1] and 0 <= y1 < y2 <= img.shape[0]
    retro = location_boxes({"zone": "retrocardiac"}, lungs)[0]
    assert (retro[0] + retro[2]) / 2 > lungs.midline  # behind the heart = the patient's left


def test_unknown_anatomy_is_an_error_naming_the_field():
    lungs = estimate_lung_fields(np.full((64, 64), 128, np.uint8))
    assert lungs.method == "prior"
    with pytest.raises(ValueError, match="zone.*valid zones"):
        location_boxes({"zone": "elbow"}, lungs)
    with pytest.raises(ValueError, match="laterality"):
        location_boxes({"laterality": "up"}, lungs)


def test_diseased_sides_collects_laterality_and_explicit_sides():
    assert diseased_sides([{"laterality": "left"}, {"diseased_sides": ["right"]}]) == {"left", "right"}
    assert diseased_sides([{"laterality": "bilateral"}]) == {"left", "right"}
    assert diseased_sides([{"laterality": None, "zone": "heart"}]) == frozenset()


# --------------------------------------------------------------------------------------- png, gallery


def test_png_round_trips_through_pillow_and_opencv(tbx, nih):
    for img in (tbx[0], nih["00000001_000.png"]):
        for fast in (True, False):
            data = encode_png(img, fast=fast)
            pil = Image.open(io.BytesIO(data))
            assert pil.mode == ("RGB" if img.ndim == 3 else "L")
            assert np.array_equal(np.asarray(pil), img) and np.array_equal(decode_png(data), img)
    mask = rasterise_box([5, 5, 40, 30], (50, 60), 0, "m")[0]
    m = np.asarray(Image.open(io.BytesIO(encode_mask(mask))))
    assert m.dtype == np.uint8 and set(np.unique(m)) == {0, 255} and np.array_equal(m == 255, mask)


def _pair(pid: str, clean: np.ndarray, corrupted: list[np.ndarray], mask: np.ndarray) -> PairRecord:
    return PairRecord(
        pair_id=pid, sample_id=f"s-{pid}", task="report", prompt="p",
        images=[ImageRef(encode_png(clean), "img.png")],
        corrupted_images=[ImageRef(encode_png(c), None) for c in corrupted],
        corruption=Corruption(method="noise", mask_fraction=float(mask.mean()), source="annotation", seed=1,
                              masks=[encode_mask(mask)]),
        chosen="a", rejected="b", on_policy="rejected", reference="r", edits=[], error_types=[],
        chosen_input_ids=[], rejected_input_ids=[], chosen_token_mask=[], rejected_token_mask=[], meta="{}",
    )  # fmt: skip


def test_gallery_writes_clean_mask_corrupted_strips(tmp_path, tbx):
    img, box = tbx
    mask = rasterise_box(box, img.shape[:2], 16, "tbx")[0]
    bad = get_corruptor("noise")(img, mask, np.random.default_rng(0))
    rows = [_pair("a", img, [bad], mask), _pair("b", img, [], mask), _pair("c", img, [bad], mask)]
    shards = tmp_path / "run"
    shards.mkdir()
    pq.write_table(pairs_table(rows), shards / "shard-00000.parquet", compression="zstd")
    written = write_gallery(shards, tmp_path / "gallery", limit=5, height=128)
    assert len(written) == 2  # the pair without a corrupted image has nothing to show
    strip = np.asarray(Image.open(written[0]))
    assert strip.shape == (128, 3 * 128 + 2 * 6, 3)
    assert np.array_equal(strip[:, :128], cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA))
    assert len(write_gallery(shards, tmp_path / "one", limit=1)) == 1
    with pytest.raises(FileNotFoundError):
        write_gallery(tmp_path / "gallery", tmp_path / "x")
