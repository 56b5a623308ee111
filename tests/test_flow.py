"""The Prefect flow wraps the same stage functions as the CLI and writes the same pair tables."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "medpref_data" / "sample" / "samples.jsonl"


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One ephemeral Prefect backend for the session (entering it takes ~8 s)."""
    home = tmp_path_factory.mktemp("prefect-home")
    saved = {k: os.environ.get(k) for k in ("PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK")}
    os.environ.update({"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"})
    from prefect.testing.utilities import prefect_test_harness

    try:
        with prefect_test_harness():
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def tables(out: Path):
    manifest = json.loads((out / "manifest.json").read_text())
    pairs = pq.ParquetDataset([str(out / s) for s in manifest["shards"]]).read()
    return manifest, pairs, pq.read_table(out / "rejects.parquet")


@pytest.mark.slow
def test_flow_writes_the_same_tables_as_the_cli(prefect_harness, tmp_path):
    from typer.testing import CliRunner

    from flows.build_pairs import build_pairs
    from pipeline.cli import app

    config = tmp_path / "config.yaml"
    config.write_text("output:\n  shard_size: 5\nsampler:\n  batch_size: 3\n")
    cli_out, flow_out = tmp_path / "cli", tmp_path / "flow"
    result = CliRunner().invoke(app, ["run", "--samples", str(SAMPLE), "--out", str(cli_out), "--config",
                                      str(config), "--no-progress"])
    assert result.exit_code == 0, result.output

    returned = build_pairs(str(SAMPLE), str(flow_out), config_path=str(config))
    cli_manifest, cli_pairs, cli_rejects = tables(cli_out)
    flow_manifest, flow_pairs, flow_rejects = tables(flow_out)
    assert returned["counts"] == flow_manifest["counts"] == cli_manifest["counts"]
    assert flow_manifest["shards"] == cli_manifest["shards"] and len(cli_manifest["shards"]) > 1
    assert cli_pairs.num_rows > 0
    assert flow_pairs.equals(cli_pairs) and flow_rejects.equals(cli_rejects)

    # a second call on the finished folder with resume is a no-op that reports the same counts
    again = build_pairs(str(SAMPLE), str(flow_out), config_path=str(config), resume=True)
    assert again["counts"] == cli_manifest["counts"]


def test_only_transient_failures_are_retried():
    from flows.build_pairs import _is_transient
    from pipeline.samplers import TransientSamplerError

    assert _is_transient(TransientSamplerError("server dropped the connection"))
    assert _is_transient(ConnectionResetError())
    assert _is_transient(TimeoutError())
    assert not _is_transient(OSError(28, "No space left on device"))
    assert not _is_transient(PermissionError())
    assert not _is_transient(ValueError("a bug"))
    assert not _is_transient(None)


def test_only_flows_import_prefect():
    offenders = []
    for package in ("pipeline", "editors", "corruptors", "schemas"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                if any(n == "prefect" or n.startswith("prefect.") for n in names):
                    offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
