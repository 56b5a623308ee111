"""DICOM, JPEG and 16-bit PNG inputs become pairs whose clean image shows the windowed anatomy.

The anatomy is a real NIH radiograph (8-bit). Each test writes it into a DICOM file the way a
scanner would store it (12- or 16-bit values, MONOCHROME1 or 2, with a window, a VOI LUT or neither)
and checks the decoded image against the reference rendering: the original 8-bit pixels.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from pipeline.config import load_config
from pipeline.dicom import window
from pipeline.image_stage import ImageError, load_images
from pipeline.process import PairBuilder
from schemas.sample import Lesion, Sample

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
DX_IMAGE = "1.2.840.10008.5.1.4.1.1.1.1"


@pytest.fixture(scope="module")
def anatomy(shared) -> np.ndarray:
    """The reference rendering: a real 512x512 8-bit chest radiograph."""
    return np.asarray(Image.open(shared("nih_cxr14_txv_test_images", "images", "00000001_000.png")).convert("L"))


def write_dicom(path, pixels: np.ndarray, bits: int, photometric: str = "MONOCHROME2", **attrs) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = attrs.pop("sop", DX_IMAGE)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    ds.PixelSpacing = [0.139, 0.139]
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.PixelData = pixels.astype(np.uint8 if bits == 8 else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def _close(a: np.ndarray, b: np.ndarray, tol: int = 1) -> bool:
    return a.shape == b.shape and int(np.abs(a.astype(int) - b.astype(int)).max()) <= tol


@pytest.mark.parametrize("bits", [8, 12, 16])
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_window_center_width_gives_the_anatomy_back(tmp_path, anatomy, bits, photometric):
    # stored = offset + a * gain, and a window that spans exactly that range: the display is the anatomy
    gain = {8: 1, 12: 16, 16: 200}[bits]
    offset = {8: 0, 12: 15, 16: 3000}[bits]
    display = anatomy if photometric == "MONOCHROME2" else 255 - anatomy
    stored = offset + display.astype(np.int64) * gain
    lo, hi = offset, offset + 255 * gain
    write_dicom(tmp_path / "x.dcm", stored, bits, photometric,
                WindowCenter=(lo + hi) / 2 + 0.5, WindowWidth=hi - lo + 1)
    info: list[dict] = []
    [(ref, arr)] = load_images(["x.dcm"], tmp_path, info=info)
    assert _close(arr, anatomy), "windowed DICOM differs from the reference rendering"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(ref.bytes))), arr)
    assert info[0]["photometric"] == photometric and info[0]["bits_stored"] == bits
    assert info[0]["pixel_spacing_mm"] == [0.139, 0.139] and info[0]["window"]["width"] == hi - lo + 1


def test_rescale_and_window_outside_the_stored_range_clip_as_the_standard_says(tmp_path, anatomy):
    # CT-like: HU = stored * 1 - 1024; a lung window (-600, 1500) maps HU linearly, beyond it saturates
    stored = anatomy.astype(np.int64) * 8  # 0..2040 -> HU -1024..1016
    write_dicom(tmp_path / "ct.dcm", stored, 12, RescaleSlope=1, RescaleIntercept=-1024,
                WindowCenter=-600, WindowWidth=1500)
    [(_, arr)] = load_images(["ct.dcm"], tmp_path)
    expected = np.rint(window(stored - 1024.0, -600, 1500)).astype(np.uint8)
    assert np.array_equal(arr, expected)
    # -1024 HU lies inside the window (lower edge -1350): gray 55; above +150 HU it saturates to white
    assert arr.min() == 55 and arr.max() == 255 and (arr == 255).sum() > 1000


def test_voi_lut_sequence_is_preferred_to_the_window(tmp_path, anatomy):
    # a 12-bit image whose VOI LUT is a gamma curve; the (wrong) window must be ignored
    stored = anatomy.astype(np.int64) * 16
    entries = 4096
    lut = np.rint(((np.arange(entries) / (entries - 1)) ** 0.5) * 4095).astype(np.uint16)
    item = Dataset()
    item.LUTDescriptor = [entries, 0, 12]
    item.add_new("LUTData", "US", lut.tolist())
    write_dicom(tmp_path / "lut.dcm", stored, 12, WindowCenter=100, WindowWidth=10, VOILUTSequence=[item])
    info: list[dict] = []
    [(_, arr)] = load_images(["lut.dcm"], tmp_path, info=info)
    expected = np.rint(lut[stored] * (255.0 / 4095)).astype(np.uint8)
    assert info[0]["window"] == "voi_lut"
    assert _close(arr, expected)


def test_16_bit_without_window_keeps_a_bright_lesion_unclipped(tmp_path, anatomy):
    # no window at all: the full range of the values is used, so the brightest structure (a dense
    # lesion near the 16-bit maximum) stays distinct from the anatomy instead of being clipped
    stored = anatomy.astype(np.int64) * 100 + 500
    stored[200:230, 300:330] = 65000
    write_dicom(tmp_path / "raw.dcm", stored, 16)
    info: list[dict] = []
    [(_, arr)] = load_images(["raw.dcm"], tmp_path, info=info)
    assert info[0]["window"] == "full_range"
    assert (arr[200:230, 300:330] == 255).all()
    body = np.ones_like(arr, dtype=bool)
    body[200:230, 300:330] = False
    assert arr[body].max() < 255 and np.corrcoef(arr[body], anatomy[body])[0, 1] > 0.999


def test_non_image_and_broken_dicom_are_rejects_with_a_reason(tmp_path, anatomy):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR: no pixels
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta, ds.SOPClassUID, ds.Modality = meta, meta.MediaStorageSOPClassUID, "SR"
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.save_as(tmp_path / "report.dcm", enforce_file_format=True)
    write_dicom(tmp_path / "cut.dcm", anatomy, 8)
    data = (tmp_path / "cut.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 5000])
    (tmp_path / "junk.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 40)
    for name, why in (("report.dcm", "without pixel data"), ("cut.dcm", "cannot be decoded"), ("junk.dcm", "DICOM")):
        with pytest.raises(ImageError) as err:
            load_images([name], tmp_path)
        assert err.value.reason == "image_unreadable" and why in err.value.detail and name in err.value.detail
        assert "\n" not in err.value.detail


def test_dicom_jpeg_and_16_bit_png_samples_become_pairs(tmp_path, anatomy):
    write_dicom(tmp_path / "a.dcm", 4095 - anatomy.astype(np.int64) * 16, 12, "MONOCHROME1")  # no window
    Image.fromarray(anatomy).save(tmp_path / "b.jpg", quality=95)
    Image.fromarray(anatomy.astype(np.uint16) * 257).save(tmp_path / "c.png")
    builder = PairBuilder(load_config(None, {}), tmp_path)
    for name in ("a.dcm", "b.jpg", "c.png"):
        sample = Sample(sample_id=name, task="report", prompt="Describe.", images=[name],
                        reference="Cardiomegaly. No pleural effusion.",
                        responses=["the heart size is normal . no pleural effusion ."],
                        lesions=[Lesion(label="Cardiomegaly", box=[150, 250, 380, 420])])
        pairs, rejects = builder.process(sample)
        assert not rejects and len(pairs) == 1, (name, rejects)
        clean = np.asarray(Image.open(io.BytesIO(pairs[0].images[0].bytes)))
        # a JPEG's reference rendering is its own decoded pixels (lossy, so not the original's)
        reference = np.asarray(Image.open(tmp_path / name)) if name == "b.jpg" else anatomy
        assert _close(clean, reference, tol=0 if name == "b.jpg" else 1), name
        assert pairs[0].corrupted_images and pairs[0].corruption.source == "annotation"
        meta = json.loads(pairs[0].meta)
        if name == "a.dcm":
            assert meta["image_info"][0]["pixel_spacing_mm"] == [0.139, 0.139]
            assert meta["image_info"][0]["photometric"] == "MONOCHROME1"
        else:
            assert "image_info" not in meta


def test_lesion_margin_scales_with_the_image(tmp_path):
    from pipeline.image_stage import corrupt_images

    regions = {}
    for size in (300, 3000):
        img = np.full((size, size), 100, dtype=np.uint8)
        box = [size * 0.4, size * 0.4, size * 0.6, size * 0.6]
        _, c = corrupt_images([img], [Lesion(box=box)], [], seed=1)
        regions[size] = c.regions[0]
    # 1.6% of the shorter side on each edge: 5 px on 300 px, 48 px on 3,000 px, the same share
    assert regions[300] == [115, 115, 185, 185]
    assert regions[3000] == [1152, 1152, 1848, 1848]
