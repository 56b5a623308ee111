"""Write a random sample of report pairs for an expert-style reading (the rubric of issue 10).

Usage: python scripts/reading_sample.py IU_OUT_DIR NIH_OUT_DIR N_IU N_NIH SEED > sample.txt
Each pair is printed with its reference, rejected and chosen sides and its edits, numbered, so a
reader can score: consistent with the reference (yes/partly/no), errors left, errors or unsupported
claims added, fluent (yes/minor/no), correct statements deleted, preference right and harmless.
"""

import random
import sys
from pathlib import Path

import pyarrow.parquet as pq


def rows(out_dir: str) -> list[dict]:
    out = []
    for p in sorted(Path(out_dir).glob("shard-*.parquet")):
        out.extend(pq.read_table(p, columns=["sample_id", "reference", "rejected", "chosen", "on_policy",
                                             "edits"]).to_pylist())
    return out


def main() -> None:
    iu_dir, nih_dir, n_iu, n_nih, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    rng = random.Random(seed)
    iu, nih = rows(iu_dir), rows(nih_dir)
    picked = rng.sample(iu, min(n_iu, len(iu))) + rng.sample(nih, min(n_nih, len(nih)))
    for k, r in enumerate(picked, 1):
        print(f"### {k}. {r['sample_id']}  on_policy={r['on_policy']}")
        print(f"REFERENCE: {r['reference']}")
        print(f"REJECTED : {r['rejected']}")
        print(f"CHOSEN   : {r['chosen']}")
        for e in r["edits"]:
            print(f"   edit {e['error_type']}: {e['before']!r} -> {e['after']!r}")
        print()


if __name__ == "__main__":
    main()
