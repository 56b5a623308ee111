"""How big and how slow is the report of a 100k-pair run?

    python benchmarks/report_size.py [--pairs 100000] [--work DIR] [--keep]

Builds two real runs from ../shared/data (IU generations: text-only pairs; NIH reports: pairs with
clean and corrupted images; VQA-RAD questions without responses: rejects), then synthesises a folder
of ``--pairs`` pairs by repeating their rows with pyarrow, in shards of 1,000 rows like the writer's
default, keeping the real share of image pairs (pair and sample ids get a suffix so they stay unique).

A real 100k-pair folder with 1024 px images holds about 100 GB; to fit a laptop disk, each shard's
image rows cycle through 8 real image pairs and the image columns are dictionary-encoded, so a
shard stores each distinct PNG once while every row still reads back with its full bytes.

Prints the time to write the report, its size, the cards it holds, peak memory, and (when Chromium
is installed) how long the page takes to open and render in headless Chromium.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDPREF_SHARED_DATA", REPO.parent / "shared" / "data"))
sys.path.insert(0, str(REPO))

SHARD_ROWS = 1000
IMAGE_POOL = 8  # distinct image pairs per synthetic shard


def build_run(work: Path, name: str, parts: list[tuple[str, str, int | None]]) -> Path:
    """Import ``parts`` (format, shared-data folder, limit) and run the pipeline on them."""
    from pipeline.config import load_config
    from pipeline.importers import import_samples, write_manifest
    from pipeline.runner import run

    samples = work / f"{name}.jsonl"
    records = []
    for fmt, folder, limit in parts:
        source = DATA / folder
        if not source.exists():
            sys.exit(f"shared data not found: {source}")
        records += list(itertools.islice(import_samples(fmt, source, manifest_dir=work), limit))
    write_manifest(records, samples)
    out = work / name
    if not (out / "manifest.json").is_file():
        run(samples, out, load_config(None, {}), progress=False)
    return out


def read_pairs(run_dir: Path) -> pa.Table:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return pa.concat_tables(pq.read_table(run_dir / s) for s in manifest["shards"])


def _suffixed(col: pa.ChunkedArray, suffix: str) -> pa.Array:
    return pc.binary_join_element_wise(col, pa.scalar(suffix), "")


def synthesise(text: pa.Table, images: pa.Table, rejects: pa.Table, base: dict, n_pairs: int,
               dest: Path) -> dict:
    """Write ``n_pairs`` pairs repeating real rows (images at their real share) plus a manifest."""
    dest.mkdir(parents=True, exist_ok=True)
    share = images.num_rows / (images.num_rows + text.num_rows)
    shards, written, t_i, i_i = [], 0, 0, 0
    while written < n_pairs:
        rows = min(SHARD_ROWS, n_pairs - written)
        n_img = round(rows * share)
        pool = [(i_i // IMAGE_POOL * IMAGE_POOL + k) % images.num_rows for k in range(IMAGE_POOL)]
        img = images.take([pool[k % IMAGE_POOL] for k in range(n_img)])
        txt = text.take([(t_i + k) % text.num_rows for k in range(rows - n_img)])
        i_i, t_i = i_i + IMAGE_POOL, t_i + rows - n_img
        # interleave: an image pair every ~1/share rows, as a mixed manifest would give
        order = sorted(range(rows), key=lambda k: ((k * share) % 1.0, k))
        table = pa.concat_tables([img, txt]).take(order) if n_img else txt
        name = f"shard-{len(shards):05d}.parquet"
        suffix = f"~{len(shards)}"
        for col in ("pair_id", "sample_id"):
            table = table.set_column(table.schema.get_field_index(col), col, _suffixed(table.column(col), suffix))
        pq.write_table(table, dest / name, compression="zstd", row_group_size=SHARD_ROWS, use_dictionary=True,
                       dictionary_pagesize_limit=256 << 20)
        shards.append(name)
        written += rows
    n_rej = max(1, round(rejects.num_rows * n_pairs / max(1, base["counts"]["pairs"])))
    rej = rejects.take([k % rejects.num_rows for k in range(n_rej)])
    copies = pa.array([f"~{k // rejects.num_rows}" for k in range(n_rej)])
    rej = rej.set_column(0, "sample_id", pc.binary_join_element_wise(rej.column("sample_id"), copies, ""))
    pq.write_table(rej, dest / "rejects.parquet", compression="zstd")
    manifest = dict(base)
    manifest["counts"] = {"samples": n_pairs + n_rej, "responses": n_pairs + n_rej, "pairs": n_pairs,
                          "rejects": n_rej}
    manifest["shards"] = shards
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def open_in_chromium(path: Path) -> float | None:
    """Milliseconds from navigation start to the rendered first page, or None without Chromium."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from test_report import HAS_CHROMIUM, Browser
    except ImportError:
        return None
    if not HAS_CHROMIUM:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        browser = Browser(Path(tmp))
        try:
            browser.open(path, timeout=60)
            errors = browser.errors()
            if errors:
                print(f"console errors: {errors}")
            return float(browser.eval("document.body.dataset.readyMs"))
        finally:
            browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the working folder")
    args = ap.parse_args()
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DO_NOT_TRACK"):
        os.environ.setdefault(key, "1")
    work = args.work or Path(tempfile.mkdtemp(prefix="medpref-report-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        text_run = build_run(work, "iu", [("iu-generations", "iu_xray_model_generations", None),
                                          ("vqa-rad", "vqa_rad", 300)])
        image_run = build_run(work, "nih", [("nih-reports", "nih_cxr14_rexrank_model_reports", None)])
        text, images = read_pairs(text_run), read_pairs(image_run)
        rejects = pq.read_table(text_run / "rejects.parquet")
        base = json.loads((text_run / "manifest.json").read_text())
        base["counts"]["pairs"] = text.num_rows + images.num_rows
        print(f"real runs: {text.num_rows} text-only pairs, {images.num_rows} image pairs, "
              f"{rejects.num_rows} rejects ({time.perf_counter() - t0:.1f} s)")

        t0 = time.perf_counter()
        big = work / f"synthetic-{args.pairs}"
        if big.exists():
            shutil.rmtree(big)
        manifest = synthesise(text, images, rejects, base, args.pairs, big)
        disk = sum(p.stat().st_size for p in big.iterdir())
        print(f"synthetic folder: {manifest['counts']['pairs']:,} pairs in {len(manifest['shards'])} shards, "
              f"{manifest['counts']['rejects']:,} rejects, {disk / 1e6:.0f} MB on disk "
              f"({time.perf_counter() - t0:.1f} s)")

        # in a fresh process, so its peak memory (VmHWM: this process image only) is the report's alone
        code = ("import json, re, sys; from pathlib import Path; from report.html import write_report; "
                "r = write_report(sys.argv[1], sys.argv[2]); "
                "status = Path('/proc/self/status'); "
                "hwm = re.search(r'VmHWM:\\s+(\\d+)', status.read_text()) if status.exists() else None; "
                "print(json.dumps({'seconds': r.seconds, 'bytes': r.bytes, 'cards': r.cards, 'pairs': r.pairs, "
                "'rejects': r.rejects, 'path': str(r.path), 'peak_mb': int(hwm.group(1)) / 1024 if hwm else None}))")
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code, str(big), str(work / "report.html")], cwd=REPO,
                              capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        peak = "?" if result["peak_mb"] is None else f"{result['peak_mb']:.0f} MB"
        print(f"report: {result['seconds']:.2f} s in write_report ({wall:.2f} s with interpreter start), "
              f"{result['bytes'] / 1e6:.2f} MB, {result['cards']} cards of {result['pairs']:,} pairs, "
              f"{result['rejects']:,} rejects; peak RSS {peak}")
        page = Path(result["path"])
        with_images = page.read_text(encoding="utf-8").count("data:image/jpeg;base64,")
        print(f"thumbnails embedded: {with_images}")
        ms = open_in_chromium(page)
        print("chromium: not installed" if ms is None else f"chromium: rendered in {ms:.0f} ms")
        assert result["bytes"] < 20e6, "the report is over 20 MB"
    finally:
        if args.keep:
            print(f"kept {work}")
        elif args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
