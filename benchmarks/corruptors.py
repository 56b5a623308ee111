"""Throughput of the corruptors at 1024x1024 on one core, on real NIH images with real lesion sizes.

Images: the 1024x1024 NIH ChestX-ray14 PNGs in ../shared/data/nih_cxr14_rexrank_model_reports.
Masks: real radiologist boxes from nih_cxr14_bbox (same 1024 pixel space, other patients' images),
grown by the default 16-px margin, cycled over the images. Prints images/s per corruptor (the
corruptor call alone, and ``corrupt_images`` end to end including PNG encoding), the lung-field
estimation time, and whether the targets hold: ``noise`` >= 50 images/s, ``inpaint`` >= 10 images/s.

Run: .venv/bin/python benchmarks/corruptors.py [--seconds 2]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corruptors import CORRUPTORS, CorruptionRefused, CorruptorUnavailable, get_corruptor  # noqa: E402
from corruptors.lungs import estimate_lung_fields  # noqa: E402
from corruptors.masks import rasterise_box  # noqa: E402
from pipeline.image_stage import corrupt_images  # noqa: E402
from schemas.sample import Lesion  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
TARGETS = {"noise": 50.0, "inpaint": 10.0}


def _rate(fn, items, seconds: float) -> float:
    fn(items[0])  # warm-up
    n, start = 0, time.perf_counter()
    while True:
        fn(items[n % len(items)])
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and n >= 5:
            return n / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time spent per measurement")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    image_dir = DATA / "nih_cxr14_rexrank_model_reports" / "images"
    images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(image_dir.glob("*.png"))]
    images = [im for im in images if im is not None and im.shape == (1024, 1024)]
    if not images:
        print(f"no 1024x1024 images under {image_dir}", file=sys.stderr)
        return 1
    with open(DATA / "nih_cxr14_bbox" / "bbox_list_2017.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    boxes = [
        [float(r["x"]), float(r["y"]), float(r["x"]) + float(r["w"]), float(r["y"]) + float(r["h"])]
        for r in rows
    ]
    boxes = boxes[:: max(1, len(boxes) // 40)][:40]
    cases = [(images[i % len(images)], boxes[i]) for i in range(len(boxes))]
    masks = [(im, rasterise_box(b, im.shape, 16, "bench")[0]) for im, b in cases]
    frac = np.mean([m.mean() for _, m in masks])
    print(
        f"{len(images)} NIH images 1024x1024, {len(masks)} real NIH lesion boxes (+16 px), mean mask {frac:.1%}"
    )
    print("one core (cv2.setNumThreads(1), CPU affinity 1)\n")

    rng = np.random.default_rng(0)
    results: dict[str, float] = {}
    print(f"{'method':<24}{'corruptor img/s':>16}{'end-to-end img/s':>18}")
    for name in sorted(CORRUPTORS):
        try:
            c = get_corruptor(name)
        except CorruptorUnavailable as e:
            print(f"{name:<24}{'skipped: ' + str(e)[:70]}")
            continue
        refused = [0]

        def call(im_m, c=c, refused=refused):
            try:
                c(im_m[0], im_m[1], rng)
            except CorruptionRefused:
                refused[0] += 1

        r = _rate(call, masks, args.seconds)
        results[name] = r
        e2e = _rate(
            lambda case, name=name: corrupt_images([case[0]], [Lesion(box=case[1])], [], method=name, seed=1),
            cases,
            args.seconds,
        )
        note = f"  ({refused[0]} calls refused)" if refused[0] else ""
        print(f"{name:<24}{r:>16.1f}{e2e:>18.1f}{note}")

    fallback = _rate(lambda im: corrupt_images([im], [], [], seed=1), images, args.seconds)
    print(f"{'fallback (whole image)':<24}{'':>16}{fallback:>18.1f}")
    locs = [{"laterality": "right", "zone": "lower"}]
    report = _rate(lambda im: corrupt_images([im], [], locs, seed=1), images, args.seconds)
    print(f"{'report (noise)':<24}{'':>16}{report:>18.1f}")
    lung_rate = _rate(estimate_lung_fields, images, args.seconds)
    print(
        f"\nlung-field estimation: {1000 / lung_rate:.1f} ms per 1024x1024 image ({lung_rate:.1f} images/s)"
    )

    ok = True
    for name, target in TARGETS.items():
        got = results.get(name, 0.0)
        status = "ok" if got >= target else "BELOW TARGET"
        ok &= got >= target
        print(f"target {name} >= {target:.0f} images/s: {got:.1f} {status}")
    return 0 if ok else 2


if __name__ == "__main__":
    raise SystemExit(main())
