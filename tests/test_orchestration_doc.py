"""docs/ORCHESTRATION.md runs as written: every ``bash`` block, in order, in one shell, from the root
of a fresh copy of the checkout, against the loopback Prefect server the doc itself starts (on free
ports instead of 4200, 8786 and 8787, so parallel test runs do not collide). Blocks marked
``bash docker`` need Docker and are skipped. Every build the doc makes must then equal an in-process
``build-pairs run`` of the same manifest and partition count, byte for byte."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prefect_server import BIN, base_env, free_port

from pipeline.config import load_config
from pipeline.runner import run

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "ORCHESTRATION.md"
SAMPLE = REPO / "medpref_data" / "sample" / "samples.jsonl"

pytestmark = pytest.mark.slow


def shell_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of every fenced block whose language is bash."""
    return [(m.group(1).strip(), m.group(2)) for m in re.finditer(r"^```(bash[^\n]*)\n(.*?)^```", text, re.S | re.M)]


def fresh_checkout(dest: Path) -> Path:
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(Path(BIN).parent)
    return dest


def test_every_shell_block_of_the_orchestration_doc_runs_as_written(tmp_path):
    blocks = shell_blocks(DOC.read_text())
    runnable = [body for info, body in blocks if info == "bash"]
    assert len(runnable) >= 8 and all(info in ("bash", "bash docker") for info, _ in blocks)
    ports = {"4200": str(free_port()), "8786": str(free_port()), "8787": str(free_port())}
    script = "\n".join(runnable)
    for old, new in ports.items():
        script = script.replace(old, new)
    checkout = fresh_checkout(tmp_path / "checkout")
    # -m: job control as in a terminal, where a background job does not ignore SIGINT (Prefect's worker
    # stops on SIGTERM by sending itself SIGINT)
    (tmp_path / "doc.sh").write_text("set -m -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
                                     + script)
    env = base_env(tmp_path / "prefect-home")
    done = subprocess.run(["bash", "-x", str(tmp_path / "doc.sh")], cwd=checkout, env=env, capture_output=True,
                          text=True, timeout=1800)
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in checkout.glob("*.log"))
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-8000:] + logs

    # what the doc built, against single-process builds of the same manifest
    clean = {n: tmp_path / f"clean-{n}" for n in (1, 2, 4)}
    for n, folder in clean.items():
        run(SAMPLE, folder, load_config(None), progress=False, partitions=n)
    built = {
        "one-off flow": (checkout / "out" / "flow-demo", 2),
        "serve": (_one(checkout / "data" / "pairs", "*-p2"), 2),
        "worker nightly": (_one(checkout / "out" / "pairs", "*-p1"), 1),
        "worker scale-out, params merged": (_one(checkout / "out" / "pairs", "*-p4"), 4),
        "temporary Dask cluster": (checkout / "out" / "big", 4),
        "existing Dask cluster": (checkout / "out" / "big-cluster", 4),
    }
    for what, (folder, n) in built.items():
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["partitions"] == n, what
        names = ["rejects.parquet", *manifest["shards"]]
        assert names == ["rejects.parquet", *json.loads((clean[n] / "manifest.json").read_text())["shards"]], what
        assert all((folder / f).read_bytes() == (clean[n] / f).read_bytes() for f in names), what
        assert manifest["stats"]["resumed"] is False, what  # deployments pass resume: true; nothing was resumed
    scale_out = json.loads((built["worker scale-out, params merged"][0] / "manifest.json").read_text())
    assert scale_out["source"]["samples"] == "data/samples.jsonl"  # the run's one override ...
    assert len({p["worker"] for p in scale_out["stats"]["partitions"]}) == 2  # ... and the deployment's 2 Dask workers
    assert "flow run(s) to clear" in done.stdout and "installed" in done.stdout


def _one(root: Path, pattern: str) -> Path:
    found = [p for p in root.glob(pattern) if (p / "manifest.json").exists()]
    assert len(found) == 1, (root, pattern, list(root.glob("*")))
    return found[0]
