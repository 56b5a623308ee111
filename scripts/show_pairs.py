"""Print pairs of a run folder for reading: reference, rejected, chosen, edits (or sample ids given)."""
import json
import random
import sys
from pathlib import Path

import pyarrow.parquet as pq

out = Path(sys.argv[1])
want = sys.argv[2:]
rows = []
for p in sorted(out.glob("**/shard-*.parquet")):
    rows.extend(pq.read_table(p).to_pylist())
if want and want[0].startswith("random"):
    n = int(want[0][6:] or 20)
    random.Random(int(want[1]) if len(want) > 1 else 0).shuffle(rows)
    rows = rows[:n]
elif want:
    rows = [r for r in rows if r["sample_id"] in want]
for r in rows:
    meta = json.loads(r["meta"]) if isinstance(r.get("meta"), str) else r.get("meta")
    print("=" * 100)
    print(r["sample_id"], r["on_policy"], r.get("error_types"))
    print("REF :", r.get("reference"))
    print("REJ :", r["rejected"])
    print("CHO :", r["chosen"])
    for e in r["edits"]:
        print("   ", e["error_type"], repr(e["before"]), "->", repr(e["after"]))
