"""Shared test setup: offline hub, the shared data folder, and the real IU generations.

The data tests read ``../shared/data`` (or ``MEDPREF_SHARED_DATA``) when it exists, so CI runs them on
the full public datasets; a clone without it falls back to ``tests/fixtures/data``, small verbatim
excerpts in the same layout (``scripts/make_fixtures.py``), so the suite still runs on real data.
A test whose figure only holds on a whole dataset asks for ``full_shared`` and skips, saying so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from data_paths import FULL_SHARED, HAS_FULL_SHARED, SHARED  # noqa: E402


def shared_path(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"data not found: {p} (neither in {FULL_SHARED} nor in the fixtures)")
    return p


def full_shared_path(*parts: str) -> Path:
    """A path under the full shared data only: for figures measured on a whole dataset."""
    if not HAS_FULL_SHARED:
        pytest.skip(f"needs the full dataset under {FULL_SHARED} (the fixtures are an excerpt)")
    return shared_path(*parts)


@pytest.fixture(scope="session")
def iu_generations() -> list[dict]:
    path = shared_path("iu_xray_model_generations", "generations.jsonl")
    return [json.loads(line) for line in path.open()]


@pytest.fixture(scope="session")
def shared():
    """shared("folder", "file") -> Path under ../shared/data, skipping the test when it is absent."""
    return shared_path


@pytest.fixture(scope="session")
def full_shared():
    """full_shared("folder", "file") -> Path under the full shared data, skipping on the fixtures."""
    return full_shared_path


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect backend for the session, in a temporary home (entering it takes ~8 s)."""
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
