"""Are two runs the same data? Compares the pair shards and ``rejects.parquet`` of run folders, byte for
byte (and, when the bytes differ, table by table, to say where), and the manifests without their timings.

Why: a refactor (issue 15 moved most modules) must not change a single pair. Build the shared IU and NIH
data with the code before and after, then compare::

    python benchmarks/same_shards.py --build /tmp/before      # at the old commit
    python benchmarks/same_shards.py --build /tmp/after       # at the new one
    python benchmarks/same_shards.py /tmp/before /tmp/after   # exit status 0: identical

``--build OUT`` writes ``OUT/iu`` and ``OUT/nih`` with ``build-pairs import`` + ``build-pairs run
--workers 1`` on ``../shared/data`` (``MEDPREF_SHARED_DATA`` overrides). Comparing two folders walks
both: every ``shard-*.parquet`` and ``rejects.parquet`` must be identical; ``manifest.json`` must be equal
once ``stats`` (seconds, memory, worker names) and ``source.samples`` (the manifest's path) are dropped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDPREF_SHARED_DATA", REPO.parent / "shared" / "data"))
RUNS = {"iu": ("iu-generations", "iu_xray_model_generations"),
        "nih": ("nih-reports", "nih_cxr14_rexrank_model_reports")}
VOLATILE = ("stats",)  # timings, peak memory, host:pid


def build(out: Path) -> None:
    cli = [sys.executable, "-m", "pipeline.cli"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    for name, (fmt, folder) in RUNS.items():
        samples = out / f"{name}.jsonl"
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run([*cli, "import", fmt, str(DATA / folder), "--out", str(samples)], check=True, env=env)
        subprocess.run([*cli, "run", "--samples", str(samples), "--out", str(out / name), "--no-progress",
                        "--workers", "1"], check=True, env=env, cwd=REPO)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(path: Path) -> dict:
    m = json.loads(path.read_text())
    for key in VOLATILE:
        m.pop(key, None)
    (m.get("source") or {}).pop("samples", None)
    return m


def _table_difference(a: Path, b: Path) -> str:
    import pyarrow.parquet as pq

    ta, tb = pq.read_table(a), pq.read_table(b)
    if ta.schema != tb.schema:
        return "schemas differ"
    if ta.num_rows != tb.num_rows:
        return f"{ta.num_rows} rows vs {tb.num_rows}"
    cols = [c for c in ta.column_names if not ta[c].equals(tb[c])]
    return f"columns differ: {', '.join(cols)}" if cols else "same table, different bytes (writer settings?)"


def compare(a: Path, b: Path) -> list[str]:
    """The differences between run folders ``a`` and ``b`` (and their ``iu``/``nih`` subfolders), as lines."""
    runs = [p.parent.relative_to(a) for p in sorted(a.rglob("manifest.json"))]
    if not runs:
        return [f"{a}: no run folder (no manifest.json)"]
    problems = []
    for rel in runs:
        ra, rb = a / rel, b / rel
        if not (rb / "manifest.json").is_file():
            problems.append(f"{rb}: missing")
            continue
        names = sorted({p.name for p in (*ra.glob("*.parquet"), *rb.glob("*.parquet"))})
        for name in names:
            pa_, pb = ra / name, rb / name
            if not (pa_.is_file() and pb.is_file()):
                problems.append(f"{rel}/{name}: only in {'the first' if pa_.is_file() else 'the second'}")
            elif _sha(pa_) != _sha(pb):
                problems.append(f"{rel}/{name}: bytes differ ({_table_difference(pa_, pb)})")
            else:
                print(f"{rel}/{name}: identical ({_sha(pa_)[:16]})")
        if _manifest(ra / "manifest.json") != _manifest(rb / "manifest.json"):
            problems.append(f"{rel}/manifest.json: differs beyond its timings")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", type=Path, help="two run folders (or folders of run folders)")
    ap.add_argument("--build", type=Path, help="build the shared IU and NIH runs into this folder")
    args = ap.parse_args(argv)
    if args.build:
        build(args.build)
    if not args.folders:
        return 0
    if len(args.folders) != 2:
        ap.error("give two folders to compare")
    problems = compare(*args.folders)
    for p in problems:
        print("DIFFERENT", p)
    print("identical" if not problems else f"{len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
