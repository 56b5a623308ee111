"""Scale figures: pairs/s and peak memory at 1k, 10k and 100k samples (one worker), the speed-up of
``build-pairs run --workers`` 1, 2 and N (the machine's cores) with identical tables, and the speed-up
of the partition (text) stage on 2 Dask workers over 1.

The manifests repeat the shared IU X-ray model generations (../shared/data/iu_xray_model_generations)
under new sample ids; they are text-only. Each size runs as ``build-pairs run`` in a subprocess, and
its peak memory is that child's ``ru_maxrss`` (from ``os.wait4``), so nothing of this process counts.
Memory should be flat: the 100k run's peak within 1.3x of the 10k run's.

The speed-up: one manifest split into 4 partitions, built by ``pipeline.runner.build_partition`` as
Dask tasks on a LocalCluster of 1, then 2 single-threaded worker processes (the function the Prefect
flow's DaskTaskRunner calls). Each worker first loads its pair builder and runs one cycle of the IU
samples through it (a warm-up task), so both timings are the partitions alone, on warm caches. Other developers share the machine: the load average is printed with the
figures, and a noisy measurement should be repeated.

The ``--workers`` figure: 20x the shared IU generations (5,920 samples) built by ``build-pairs run
--workers W`` in a child process; pairs/s over the run's own wall time (plan to ``manifest.json``,
the worker start-up included), and every shard and ``rejects.parquet`` compared byte for byte with the
1-worker output.

    .venv/bin/python benchmarks/scale.py [--sizes 1000,10000,100000] [--scaling-samples 6000] [--skip-scaling]
    .venv/bin/python benchmarks/scale.py --skip-sizes --skip-scaling      # only the --workers figure
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

IU = ROOT.parent / "shared" / "data" / "iu_xray_model_generations"


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def write_manifest(path: Path, n: int) -> None:
    """``n`` samples: the IU generations repeated, each copy with new sample ids."""
    from pipeline.importers import import_samples

    base = list(import_samples("iu-generations", IU))
    with open(path, "w", encoding="utf-8") as f:
        for k in range(math.ceil(n / len(base))):
            for r in base[: n - k * len(base)]:
                f.write(json.dumps({**r, "sample_id": f"{r['sample_id']}-r{k}"}) + "\n")


def build_pairs_command() -> list[str]:
    exe = Path(sys.executable).with_name("build-pairs")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pipeline.cli"]


def measure_run(samples: Path, out: Path, workers: int = 1) -> dict:
    """``build-pairs run`` in a child process: its wall time, its own peak RSS, the manifest's figures."""
    start = time.perf_counter()
    proc = subprocess.Popen([*build_pairs_command(), "run", "--samples", str(samples), "--out", str(out),
                             "--no-progress", "--workers", str(workers)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"build-pairs run failed: {err[-2000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    rss = usage.ru_maxrss / (1 << 20) if sys.platform == "darwin" else usage.ru_maxrss / 1024
    stats = manifest["stats"]
    return {"samples": manifest["counts"]["samples"], "pairs": manifest["counts"]["pairs"],
            "rejects": manifest["counts"]["rejects"], "shards": len(manifest["shards"]),
            "process_wall_s": wall, "run_wall_s": stats["wall_seconds"],
            "pairs_per_s": manifest["counts"]["pairs"] / stats["wall_seconds"],
            "text_s": stats["stages"].get("text", {}).get("seconds", 0.0), "peak_rss_mb": rss,
            "build_s": sum(p["wall_seconds"] for p in stats.get("partitions", []))}


def table_bytes(out: Path) -> dict[str, bytes]:
    """The output's tables (shards and rejects), by file name: what must not depend on the workers."""
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.parquet"))}


def measure_workers(work: Path, n_samples: int, repeats: int) -> None:
    """``build-pairs run --workers W`` for W = 1, 2 and the machine's cores: pairs/s and identical tables.

    The runs are interleaved (1, 2, N, 1, 2, N, ...) ``repeats`` times and the best of each W is
    compared, so a burst of load from other users of the machine hits every W alike."""
    from pipeline.pool import machine_cores

    samples = work / f"workers-{n_samples}.jsonl"
    write_manifest(samples, n_samples)
    counts = sorted({1, 2, machine_cores()})
    runs: dict[int, list[dict]] = {w: [] for w in counts}
    base_bytes: dict[str, bytes] | None = None
    for rep in range(repeats):
        for w in counts:
            out = work / f"workers-{w}"
            shutil.rmtree(out, ignore_errors=True)
            r = measure_run(samples, out, workers=w)
            tables = table_bytes(out)
            base_bytes = tables if base_bytes is None else base_bytes
            r["identical"] = tables == base_bytes
            runs[w].append(r)
            print(f"  run {rep + 1}/{repeats} --workers {w}: {r['pairs']:,} pairs in {r['run_wall_s']:.1f} s, "
                  f"{r['pairs_per_s']:.1f} pairs/s (partition build {r['build_s']:.1f} s: "
                  f"{r['pairs'] / r['build_s']:.1f} pairs/s), {len(tables)} tables "
                  f"{'identical to' if r['identical'] else 'DIFFERENT from'} the first run's "
                  f"(load average {load_avg()})", flush=True)
            shutil.rmtree(out, ignore_errors=True)
    best = {w: max(r["pairs_per_s"] for r in rs) for w, rs in runs.items()}
    build = {w: max(r["pairs"] / r["build_s"] for r in rs) for w, rs in runs.items()}
    for w in counts:
        same = all(r["identical"] for r in runs[w])
        paired = sorted(r["pairs_per_s"] / r1["pairs_per_s"] for r, r1 in zip(runs[w], runs[1], strict=True))
        verdict = f" (target >= 1.7x: {'ok' if best[w] / best[1] >= 1.7 else 'BELOW'})" if w == 2 else ""
        print(f"--workers {w}: {n_samples:,} samples, best of {repeats} runs: {best[w]:.1f} pairs/s over the "
              f"run's wall time ({best[w] / best[1]:.2f}x of 1 worker; run by run {paired[0]:.2f}x to "
              f"{paired[-1]:.2f}x, median {paired[len(paired) // 2]:.2f}x), {build[w]:.1f} pairs/s over the partition "
              f"build without the set-up ({build[w] / build[1]:.2f}x); tables {'identical' if same else 'DIFFERENT'}"
              + verdict, flush=True)


def _warm(plan_json: str, warm_path: str) -> int:
    """Load this worker's pair builder and run one cycle of the base samples through it, so both
    timings see warm caches (the repeated texts hit the tokenizer and reference caches afterwards)."""
    from pipeline.batches import shared_builder
    from pipeline.manifest_reader import read_manifest
    from pipeline.runner import RunPlan

    plan = RunPlan.model_validate_json(plan_json)
    builder = shared_builder(plan.config, Path(plan.samples_path).parent)
    for item in read_manifest(warm_path):
        if item.sample is not None:
            builder.process(item.sample)
    return os.getpid()


def _partition(plan_json: str, rank: int) -> dict:
    from pipeline.runner import RunPlan, build_partition

    result = build_partition(RunPlan.model_validate_json(plan_json), rank)
    return {"rank": rank, "pairs": result.counts["pairs"], "worker": result.worker}


def measure_dask(samples: Path, warm: Path, out_root: Path, workers: int, partitions: int) -> dict:
    from distributed import Client, LocalCluster

    from pipeline.config import load_config
    from pipeline.runner import merge_run, plan_run

    out = out_root / f"dask-{workers}"
    plan = plan_run(samples, out, load_config(None, {}), partitions=partitions, check_setup=False)
    plan_json = plan.model_dump_json()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        addresses = list(client.scheduler_info()["workers"])
        client.gather([client.submit(_warm, plan_json, str(warm), workers=[a], pure=False) for a in addresses])
        load_before = load_avg()
        start = time.perf_counter()
        results = client.gather([client.submit(_partition, plan_json, r, pure=False) for r in range(partitions)])
        seconds = time.perf_counter() - start
    merge_run(plan)
    pairs = sum(r["pairs"] for r in results)
    return {"workers": workers, "seconds": seconds, "pairs": pairs, "pairs_per_s": pairs / seconds,
            "worker_pids": sorted({r["worker"] for r in results}), "load_before": load_before,
            "load_after": load_avg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--scaling-samples", type=int, default=12000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--skip-sizes", action="store_true")
    ap.add_argument("--workers-samples", type=int, default=20 * 296, help="samples for the --workers figure")
    ap.add_argument("--skip-workers", action="store_true")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs per worker count (best is kept)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep manifests and outputs here")
    args = ap.parse_args()
    if not IU.exists():
        raise SystemExit(f"{IU} is absent")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="medpref-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs; load average at start {load_avg()}", flush=True)
    try:
        if not args.skip_sizes:
            rows = []
            print(f"{'samples':>9} {'pairs':>8} {'rejects':>7} {'shards':>6} {'run s':>8} {'pairs/s':>8} "
                  f"{'text s':>8} {'process s':>9} {'peak MB':>8}  load avg after", flush=True)
            for n in [int(x) for x in args.sizes.split(",")]:
                samples = work / f"samples-{n}.jsonl"
                write_manifest(samples, n)
                out = work / f"out-{n}"
                shutil.rmtree(out, ignore_errors=True)
                r = measure_run(samples, out)
                rows.append(r)
                print(f"{r['samples']:>9,} {r['pairs']:>8,} {r['rejects']:>7,} {r['shards']:>6} {r['run_wall_s']:>8.1f} "
                      f"{r['pairs_per_s']:>8.1f} {r['text_s']:>8.1f} {r['process_wall_s']:>9.1f} "
                      f"{r['peak_rss_mb']:>8.1f}  {load_avg()}", flush=True)
                shutil.rmtree(out, ignore_errors=True)
                samples.unlink()
            by_n = {r["samples"]: r for r in rows}
            if 10_000 in by_n and 100_000 in by_n:
                ratio = by_n[100_000]["peak_rss_mb"] / by_n[10_000]["peak_rss_mb"]
                print(f"peak memory 100k / 10k: {ratio:.3f}x (limit 1.3x): {'ok' if ratio <= 1.3 else 'TOO HIGH'}")
        if not args.skip_workers:
            measure_workers(work, args.workers_samples, args.repeats)
        if not args.skip_scaling:
            samples = work / f"scaling-{args.scaling_samples}.jsonl"
            write_manifest(samples, args.scaling_samples)
            warm = work / "warm.jsonl"
            write_manifest(warm, 296)
            runs = {}
            for workers in (1, 2):
                shutil.rmtree(work / f"dask-{workers}", ignore_errors=True)
                runs[workers] = r = measure_dask(samples, warm, work, workers, args.partitions)
                print(f"partition (text) stage, {args.scaling_samples:,} samples in {args.partitions} partitions, "
                      f"{workers} Dask worker(s): {r['seconds']:.1f} s, {r['pairs_per_s']:.1f} pairs/s "
                      f"(load average {r['load_before']} -> {r['load_after']}; {len(r['worker_pids'])} process(es))",
                      flush=True)
            speedup = runs[1]["seconds"] / runs[2]["seconds"]
            print(f"2 workers / 1 worker: {speedup:.2f}x (target >= 1.7x): {'ok' if speedup >= 1.7 else 'BELOW'}")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
