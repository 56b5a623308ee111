"""Bad input: one manifest with every kind of bad row. Each bad row is a reject with its reason code
that names the record; the good rows around it still become pairs; no file outside the manifest's
folder is opened and nothing is written outside the output folder. A run that cannot run at all
(bad config, unreadable manifest, full disk) exits non-zero with one line on stderr and leaves no
``manifest.json``."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from data_paths import SHARED as DATA  # noqa: E402 - the full shared data, else the committed excerpts
from typer.testing import CliRunner

import pipeline.manifest_reader as reader_mod
import pipeline.shard_merge as shard_merge_mod
import pipeline.writer as writer_mod
from pipeline.cli import app
from pipeline.config import load_config
from pipeline.importers import import_samples
from pipeline.runner import run

IU_DIR = DATA / "iu_xray_model_generations"
NIH_IMAGE = DATA / "nih_cxr14_txv_test_images" / "images" / "00000001_000.png"

pytestmark = pytest.mark.skipif(not IU_DIR.exists() or not NIH_IMAGE.exists(), reason="../shared/data is absent")

_OPENED: list[str] | None = None  # paths opened while a test records them (an audit hook, see below)


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _OPENED is not None and args and isinstance(args[0], str | bytes | os.PathLike):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed; it records nothing unless _OPENED is a list


@pytest.fixture(scope="module")
def iu() -> list[dict]:
    records = []
    for r in import_samples("iu-generations", IU_DIR):
        records.append(r)
        if len(records) == 10:
            break
    return records


def dump(record: dict) -> bytes:
    return json.dumps(record).encode()


NIH_GOOD = {"task": "report", "prompt": "Describe the findings.", "images": ["images/00000001_000.png"],
            "reference": "Cardiomegaly. No pleural effusion.",
            "responses": ["The heart is normal in size. There is a small left pleural effusion. No pneumothorax. "
                          "The osseous structures are intact."]}


def nih(sample_id: str, **changes) -> bytes:
    return dump({"sample_id": sample_id, **NIH_GOOD, **changes})


# (line, expected sample_id of the reject, reason) for every bad row; filled in by the fixture
@pytest.fixture()
def bad_world(tmp_path, iu):
    """``data/manifest/`` (manifest and images), ``data/outside/`` (a real PNG the manifest must never
    reach), and the rows: (raw line, expected outcome)."""
    root = tmp_path / "data"
    folder, outside = root / "manifest", root / "outside"
    (folder / "images").mkdir(parents=True)
    outside.mkdir()
    shutil.copyfile(NIH_IMAGE, folder / "images" / NIH_IMAGE.name)
    shutil.copyfile(NIH_IMAGE, outside / "secret.png")
    (folder / "images" / "not-a-png.png").write_text("this is text, not an image")
    png = NIH_IMAGE.read_bytes()
    (folder / "images" / "truncated.png").write_bytes(png[: len(png) // 2])
    a, b, c, d = iu[:4]
    rows = [  # (line bytes, expected: "pair" | (sample_id, reason))
        (dump({**a, "site": "indiana"}), "pair"),
        (b'{"sample_id": "broken", "task": "report", "reference": ', ("line-2", "invalid_json")),
        (b'{"sample_id": "latin1", "reference": "Heart size normal \xe9"}', ("line-3", "invalid_utf8")),
        (b"[1, 2]", ("line-4", "invalid_json")),
        (dump({**b, "responses": ["   ", b["responses"][0]]}), (b["sample_id"], "empty_response")),
        (dump({k: v for k, v in c.items() if k != "reference"}), (c["sample_id"], "missing_reference")),
        (dump({**d, "task": "caption"}), (d["sample_id"], "unknown_task")),
        (dump({**a, "reference": "a second line with the first line's id"}), (a["sample_id"], "duplicate_sample_id")),
        (b"", None),  # blank: skipped
        (dump({k: v for k, v in iu[4].items() if k != "sample_id"}), ("line-10", "invalid_field")),
        (nih("nih-good", lesions=[{"label": "Cardiomegaly", "box": [150, 250, 400, 420], "image": 0}]), "pair"),
        (nih("escape-dots", images=["../outside/secret.png"]), ("escape-dots", "path_outside_manifest")),
        (nih("escape-inner", images=["images/../../outside/secret.png"]), ("escape-inner", "path_outside_manifest")),
        (nih("not-an-image", images=["images/not-a-png.png"]), ("not-an-image", "image_unreadable")),
        (nih("missing-file", images=["images/missing.png"]), ("missing-file", "image_unreadable")),
        (nih("truncated", images=["images/truncated.png"]), ("truncated", "image_unreadable")),
        (nih("degenerate-box", lesions=[{"box": [300, 300, 300, 350]}]), ("degenerate-box", "bad_lesion")),
        (nih("box-outside", lesions=[{"box": [5000, 5000, 5100, 5100]}]), ("box-outside", "bad_lesion")),
        (nih("flat-polygon", lesions=[{"polygon": [[10, 10], [20, 20], [30, 30]]}]), ("flat-polygon", "bad_lesion")),
        (nih("wrong-image-index", lesions=[{"box": [10, 10, 50, 50], "image": 3}]), ("wrong-image-index", "bad_lesion")),
        (dump({**iu[5], "responses": ["no acute disease . " * 26_316]}), (iu[5]["sample_id"], "response_too_long")),
        (dump({**iu[6], "responses": []}), (iu[6]["sample_id"], "no_responses")),
        (dump({**iu[7], "responses": [5]}), (iu[7]["sample_id"], "invalid_field")),
        (dump({**iu[8], "images": "images/00000001_000.png"}), (iu[8]["sample_id"], "invalid_field")),
        (dump({**a, "sample_id": "../../evil"}), "pair"),
    ]
    path = folder / "samples.jsonl"
    path.write_bytes(b"\n".join(line for line, _ in rows) + b"\n")
    return root, path, rows


def read_out(out: Path):
    manifest = json.loads((out / "manifest.json").read_text())
    pairs = pq.ParquetDataset([str(out / s) for s in manifest["shards"]]).read().to_pylist() if manifest["shards"] else []
    return manifest, pairs, pq.read_table(out / "rejects.parquet").to_pylist()


def snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
            if p.is_file() and skip not in p.parents}


def test_every_bad_row_is_a_named_reject_and_the_good_rows_pair(bad_world, tmp_path, monkeypatch, iu):
    global _OPENED
    root, path, rows = bad_world
    out = root / "out"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # a relative write anywhere would land here
    before = snapshot(tmp_path, out)
    _OPENED = []
    try:
        summary = run(path, out, load_config(None, {"output.shard_size": 2, "sampler.batch_size": 4}), progress=False)
    finally:
        opened, _OPENED = _OPENED, None
    manifest, pairs, rejects = read_out(out)

    # no file outside the manifest's folder was opened, nothing outside the output folder was written
    assert any(p.endswith("manifest/images/00000001_000.png") for p in opened)  # the hook does see reads
    assert not [p for p in opened if str(root / "outside") in os.path.abspath(p)]
    assert snapshot(tmp_path, out) == before and list(cwd.iterdir()) == []
    assert sorted(p.name for p in out.iterdir()) == sorted([*manifest["shards"], "rejects.parquet", "manifest.json",
                                                           "README.md"])

    # each bad row: exactly its reason, naming its record (and line, when it was a parse failure)
    for line_no, (_, expected) in enumerate(rows, 1):
        if expected is None or expected == "pair":
            continue
        sid, reason = expected
        mine = [r for r in rejects if r["sample_id"] == sid and r["reason"] == reason]
        assert mine, (line_no, expected, [r for r in rejects if r["sample_id"] == sid])
        if mine[0]["stage"] == "parse":
            assert mine[0]["detail"].startswith(f"line {line_no}: field "), mine[0]
    assert all(r["reason"] != "internal_error" for r in rejects), rejects
    assert all("\n" not in r["detail"] and len(r["detail"]) < 400 for r in rejects)  # never the 500k text
    by_id = {r["sample_id"]: r for r in rejects}
    assert "line 1's id" in by_id[iu[0]["sample_id"]]["detail"]  # the duplicate names its owner
    assert "escapes the manifest folder" in by_id["escape-inner"]["detail"]
    assert "No such file" in by_id["missing-file"]["detail"] and "not-a-png.png" in by_id["not-an-image"]["detail"]
    assert "zero or negative area" in by_id["degenerate-box"]["detail"]
    assert "outside the 512x512 image" in by_id["box-outside"]["detail"]
    long_response = json.loads(rows[20][0])["responses"][0]
    assert len(long_response) >= 500_000
    assert by_id[iu[5]["sample_id"]]["detail"].startswith(f"{len(long_response)} characters")

    # the good rows became pairs: the first IU sample, the second response of line 5, the NIH image, '../../evil'
    pair_ids = {p["sample_id"] for p in pairs}
    assert {iu[0]["sample_id"], "nih-good", "../../evil"} <= pair_ids
    # the good second response of line 5 is a pair, or a reject the text stage explains (never lost)
    text_reasons = {"no_error", "edit_unverified", "residual_error", "not_fluent", "edit_not_minimal"}
    assert iu[1]["sample_id"] in pair_ids or any(r["sample_id"] == iu[1]["sample_id"] and r["reason"] in text_reasons
                                                for r in rejects)
    (nih_pair,) = [p for p in pairs if p["sample_id"] == "nih-good"]
    assert nih_pair["corrupted_images"][0]["bytes"] != nih_pair["images"][0]["bytes"]
    assert json.loads([p for p in pairs if p["sample_id"] == iu[0]["sample_id"]][0]["meta"])["manifest_meta"][
        "site"] == "indiana"

    # every response of every parsed sample is exactly one pair or one reject row
    for sid in pair_ids | {r["sample_id"] for r in rejects if r["response_index"] >= 0}:
        indices = sorted([json.loads(p["meta"])["response_index"] for p in pairs if p["sample_id"] == sid]
                         + [r["response_index"] for r in rejects if r["sample_id"] == sid and r["response_index"] >= 0])
        assert indices == list(range(len(indices))), sid
    n_lines = sum(1 for line, _ in rows if line.strip())
    assert manifest["counts"]["samples"] == n_lines == summary.counts["samples"]
    assert manifest["counts"]["pairs"] == len(pairs) and manifest["counts"]["rejects"] == len(rejects)

    # the same bad rows split over three partitions (duplicates are global): the same rows
    run(path, root / "out3", load_config(None, {"output.shard_size": 2}), progress=False, partitions=3)
    _, pairs3, rejects3 = read_out(root / "out3")
    key = lambda r: json.dumps(r, sort_keys=True, default=repr)  # noqa: E731
    assert sorted(rejects3, key=key) == sorted(rejects, key=key) and sorted(pairs3, key=key) == sorted(pairs, key=key)


def test_an_over_long_line_is_skipped_not_loaded(tmp_path, monkeypatch, iu):
    monkeypatch.setattr(reader_mod, "MAX_LINE_BYTES", 20_000)
    path = tmp_path / "samples.jsonl"
    huge = dump({**iu[1], "responses": ["x" * 50_000]})
    path.write_bytes(dump(iu[0]) + b"\n" + huge + b"\n" + dump(iu[2]) + b"\n")
    run(path, tmp_path / "out", load_config(None, {}), progress=False)
    manifest, pairs, rejects = read_out(tmp_path / "out")
    # the long line is skipped with its reason; the rows around it are read (pairs, or text-stage rejects)
    assert [(r["sample_id"], r["reason"]) for r in rejects if r["stage"] != "text"] == [("line-2", "line_too_long")]
    ended = {p["sample_id"] for p in pairs} | {r["sample_id"] for r in rejects if r["stage"] == "text"}
    assert ended == {iu[0]["sample_id"], iu[2]["sample_id"]}
    assert manifest["counts"]["samples"] == 3


def test_identical_runs_give_identical_files(tmp_path, bad_world):
    root, path, _ = bad_world
    cfg = load_config(None, {"output.shard_size": 3})
    for name in ("a", "b"):
        run(path, root / name, cfg, progress=False, partitions=2)
    ma, mb = (json.loads((root / n / "manifest.json").read_text()) for n in ("a", "b"))
    assert ma["shards"] == mb["shards"] and ma["counts"] == mb["counts"] and ma["summary"] == mb["summary"]
    for name in ["rejects.parquet", *ma["shards"]]:
        assert (root / "a" / name).read_bytes() == (root / "b" / name).read_bytes(), name


# -- runs that cannot run at all --------------------------------------------------------------------
def one_line_failure(result, out: Path) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("build-pairs: error: "), result.stderr
    assert not (out / "manifest.json").exists()
    return lines[0]


def cli(*args: str):
    return CliRunner().invoke(app, ["run", *args, "--no-progress"])


def test_bad_config_and_unreadable_manifest(tmp_path, bad_world):
    _, path, _ = bad_world
    config = tmp_path / "bad.yaml"
    config.write_text("output:\n  shard_sise: 3\n")
    line = one_line_failure(cli("--samples", str(path), "--out", str(tmp_path / "o1"), "--config", str(config)), tmp_path / "o1")
    assert "shard_sise" in line and "shard_size" in line and not (tmp_path / "o1").exists()
    line = one_line_failure(cli("--samples", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o2")), tmp_path / "o2")
    assert "cannot read manifest" in line and not (tmp_path / "o2").exists()
    line = one_line_failure(cli("--samples", str(tmp_path), "--out", str(tmp_path / "o3")), tmp_path / "o3")
    assert "it is a folder" in line
    (tmp_path / "yaml-list.yaml").write_text("- just\n- a list\n")
    line = one_line_failure(cli("--samples", str(path), "--out", str(tmp_path / "o4"), "--config",
                                str(tmp_path / "yaml-list.yaml")), tmp_path / "o4")
    assert "mapping" in line


@pytest.mark.parametrize("where", ["shard", "marker", "rejects", "manifest"])
def test_full_disk_fails_cleanly_and_resume_finishes(tmp_path, bad_world, monkeypatch, where):
    root, path, _ = bad_world
    clean = tmp_path / "clean"
    assert cli("--samples", str(path), "--out", str(clean), "--config", str(_cfg(tmp_path))).exit_code == 0
    enospc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    out = tmp_path / "full"
    calls = {"n": 0}
    if where in ("shard", "marker", "manifest"):
        name = "atomic_write_table" if where == "shard" else "atomic_write_json"
        mod = shard_merge_mod if where == "manifest" else writer_mod  # the module that writes that file
        real = getattr(mod, name)

        def full(target, *args):
            hit = {"shard": "shard-r", "marker": "chunk-", "manifest": "manifest.json"}[where]
            if hit in Path(target).name:
                calls["n"] += 1
                if calls["n"] >= 2 or where == "manifest":
                    raise enospc
            return real(target, *args)

        monkeypatch.setattr(mod, name, full)
    else:
        class FullWriter(pq.ParquetWriter):
            def write_table(self, *a, **k):
                raise enospc

        monkeypatch.setattr(shard_merge_mod.pq, "ParquetWriter", FullWriter)
    line = one_line_failure(cli("--samples", str(path), "--out", str(out), "--config", str(_cfg(tmp_path))), out)
    assert "No space left on device" in line
    assert not list(out.rglob("*.tmp"))  # no half-written temp file left behind
    monkeypatch.undo()  # space is freed
    result = cli("--samples", str(path), "--out", str(out), "--config", str(_cfg(tmp_path)), "--resume")
    assert result.exit_code == 0, result.output
    _, clean_pairs, clean_rejects = read_out(clean)
    _, pairs, rejects = read_out(out)
    assert pairs == clean_pairs and rejects == clean_rejects


def _cfg(tmp_path: Path) -> Path:
    cfg = tmp_path / "shards.yaml"
    cfg.write_text("output:\n  shard_size: 2\n")  # several shards, so the disk can fill after the first
    return cfg


def _can_mount_tmpfs() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _can_mount_tmpfs(), reason="cannot mount a tmpfs in a user namespace here")
def test_a_real_full_disk_on_a_tiny_tmpfs(tmp_path, iu):
    """A 96 KiB tmpfs as the output folder, in a private mount namespace: the disk really fills."""
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in import_samples("iu-generations", IU_DIR)))
    disk = tmp_path / "disk"
    disk.mkdir()
    exe = Path(sys.executable).with_name("build-pairs")
    cmd = f"{exe} run --samples {samples} --out {disk}/out --no-progress" if exe.exists() else \
        f"{sys.executable} -m pipeline.cli run --samples {samples} --out {disk}/out --no-progress"
    script = (f"mount -t tmpfs -o size=96k tmpfs {disk} && {cmd}; rc=$?; "
              f"test -e {disk}/out/manifest.json && echo HAS_MANIFEST; exit $rc")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("build-pairs")]
    assert len(errors) == 1 and "No space left on device" in errors[0], proc.stderr
    assert not [ln for ln in proc.stderr.splitlines() if "Traceback" in ln]
    assert "HAS_MANIFEST" not in proc.stdout
