"""``build-pairs`` end to end on the bundled sample, and its one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli import app, run_overrides

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "medpref_data" / "sample" / "samples.jsonl"
from data_paths import SHARED as DATA  # noqa: E402 - the full shared data, else the committed excerpts

cli = CliRunner()


def invoke(*args: str):
    return cli.invoke(app, [str(a) for a in args])


def sample_records() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "out"
    result = invoke("run", "--samples", SAMPLE, "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("wrote ")
    return out


def test_bundled_sample_is_small_and_self_contained():
    records = sample_records()
    assert 15 <= len(records) <= 30
    with_images = [r for r in records if r["images"]]
    assert 1 <= len(with_images) and len({p for r in with_images for p in r["images"]}) == 2
    for r in with_images:
        for p in r["images"]:
            assert not Path(p).is_absolute() and (SAMPLE.parent / p).is_file()
    assert sum(f.stat().st_size for f in (SAMPLE.parent / "images").iterdir()) < 1_000_000


def test_run_on_the_bundled_sample(sample_run):
    manifest = json.loads((sample_run / "manifest.json").read_text())
    records = sample_records()
    n_responses = sum(len(r["responses"]) for r in records)
    counts = manifest["counts"]
    assert counts["samples"] == len(records) and counts["responses"] == n_responses
    rejects = pq.read_table(sample_run / "rejects.parquet").to_pylist()
    assert counts["pairs"] + sum(r["response_index"] >= 0 for r in rejects) == n_responses
    assert counts["pairs"] > 0 and manifest["shards"]
    assert manifest["tokenizer"] and manifest["config"]["sampler"]["name"] == "replay"
    assert manifest["schema_version"] and manifest["pipeline_version"]
    assert all(r["reason"] != "internal_error" for r in rejects), rejects

    from datasets import load_dataset

    ds = load_dataset("parquet", data_files=[str(sample_run / s) for s in manifest["shards"]], split="train",
                      cache_dir=str(sample_run.parent / "hf-cache"))
    assert ds.num_rows == counts["pairs"]
    nih = [row for row in ds if row["sample_id"].startswith("nih-")]
    assert nih, "the NIH samples (7 real model reports each) should give pairs"
    for row in nih:
        assert row["images"][0].size == (1024, 1024) and row["corrupted_images"][0].size == (1024, 1024)
    for row in ds:
        if not row["images"]:
            assert row["corrupted_images"] == [] and row["corruption"]["reason"]


def test_flags_override_the_config_file(tmp_path):
    small = tmp_path / "samples.jsonl"
    small.write_text("".join(json.dumps(r) + "\n" for r in sample_records()[:3]))
    config = tmp_path / "config.yaml"
    config.write_text("seed: 3\noutput:\n  shard_size: 1\ntext:\n  max_response_chars: 4000\n")
    result = invoke("run", "--samples", small, "--out", tmp_path / "out", "--config", config, "--seed", "8",
                    "--num-samples", "2", "--no-progress")
    assert result.exit_code == 0, result.output
    cfg = json.loads((tmp_path / "out" / "manifest.json").read_text())["config"]
    assert (cfg["seed"], cfg["output"]["shard_size"], cfg["sampler"]["num_samples"]) == (8, 1, 2)
    assert cfg["text"]["max_response_chars"] == 4000


def test_model_flag_alone_picks_the_cpu_sampler():
    assert run_overrides(model="/m")["sampler.name"] == "transformers"
    assert run_overrides(model="/m", sampler="vllm")["sampler.name"] == "vllm"
    assert run_overrides()["sampler.name"] is None


def test_bad_config_is_one_line_exit_2_and_nothing_written(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("sampler:\n  num_sample: 2\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--samples", str(SAMPLE), "--out",
                           str(tmp_path / "out"), "--config", str(config)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("build-pairs: error:")
    assert "'sampler.num_sample'" in lines[0] and "num_samples" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sampler", "gpt"], "unknown sampler 'gpt'; valid samplers:"),
        (["--num-samples", "0"], "sampler.num_samples"),
    ],
)
def test_bad_flags_exit_2(tmp_path, args, message):
    result = invoke("run", "--samples", SAMPLE, "--out", tmp_path / "out", *args)
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_manifest_and_finished_output_exit_2(tmp_path, sample_run):
    result = invoke("run", "--samples", tmp_path / "nope.jsonl", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "cannot read manifest" in result.stderr
    result = invoke("run", "--samples", SAMPLE, "--out", sample_run)
    assert result.exit_code == 2 and "complete run" in result.stderr
    before = (sample_run / "manifest.json").read_bytes()
    result = invoke("run", "--samples", SAMPLE, "--out", sample_run, "--resume", "--no-progress")
    assert result.exit_code == 0 and (sample_run / "manifest.json").read_bytes() == before


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is absent")
def test_import_writes_a_manifest_run_accepts(tmp_path):
    out = tmp_path / "iu.jsonl"
    result = invoke("import", "iu-generations", DATA / "iu_xray_model_generations", "--out", out)
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    source_rows = (DATA / "iu_xray_model_generations" / "generations.jsonl").read_text().splitlines()
    assert 0 < len(lines) <= len(source_rows)
    assert f"wrote {len(lines)} samples" in result.stdout
    result = invoke("import", "mimic", DATA, "--out", tmp_path / "x.jsonl")
    assert result.exit_code == 2 and "valid formats:" in result.stderr and "iu-generations" in result.stderr


def test_eval_prints_figures(sample_run, tmp_path):
    pairs = json.loads((sample_run / "manifest.json").read_text())["counts"]["pairs"]
    result = invoke("eval", sample_run, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pairs"] == pairs
    result = invoke("eval", sample_run)
    assert result.exit_code == 0 and f"pairs: {pairs}" in result.stdout
    result = invoke("eval", tmp_path)
    assert result.exit_code == 2 and "no manifest.json" in result.stderr


def test_gallery_writes_files(sample_run, tmp_path):
    result = invoke("gallery", sample_run, tmp_path / "gallery", "--limit", "4")
    assert result.exit_code == 0, result.output
    assert any((tmp_path / "gallery").rglob("*"))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("tiny") / "model"
    result = invoke("tiny-model", dest)
    assert result.exit_code == 0, result.output
    return dest


def test_tiny_model_writes_a_loadable_model_folder(tiny_model):
    assert (tiny_model / "config.json").is_file()


@pytest.mark.slow
def test_model_flag_samples_missing_responses_offline(tmp_path, tiny_model):
    """--model alone: the transformers sampler on the CPU fills in responses, relative images included."""
    records = [r for r in sample_records() if r["images"]][:1] + sample_records()[:1]
    (tmp_path / "images").mkdir()
    for r in records:
        for p in r["images"]:
            (tmp_path / p).write_bytes((SAMPLE.parent / p).read_bytes())
    manifest = tmp_path / "samples.jsonl"
    manifest.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "responses"}) + "\n" for r in records))
    result = invoke("run", "--samples", manifest, "--out", tmp_path / "out", "--model", tiny_model,
                    "--num-samples", "2", "--seed", "4", "--no-progress")
    assert result.exit_code == 0, result.output
    out = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert out["counts"]["responses"] == 4 and out["config"]["sampler"]["name"] == "transformers"
    rejects = pq.read_table(tmp_path / "out" / "rejects.parquet").to_pylist()
    assert all(r["response_index"] >= 0 and r["reason"] != "internal_error" for r in rejects), [r["detail"] for r in rejects]
    # a random-weight model writes no report text, so its responses may all end as text-stage rejects
    assert out["counts"]["pairs"] + len(rejects) == 4
    assert all(r["stage"] == "text" and r["detail"] for r in rejects)
    for shard in out["shards"]:
        for row in pq.read_table(tmp_path / "out" / shard).to_pylist():
            meta = json.loads(row["meta"])
            assert meta["sampler"] == "transformers" and meta["sampling"]["seed"] == 4
            assert meta["sampler_provenance"]["model"]["path"] == str(tiny_model.resolve())
