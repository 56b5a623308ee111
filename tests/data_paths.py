"""Where the tests' real data lies: the full shared datasets when present, else the committed excerpts.

``../shared/data`` (or ``MEDPREF_SHARED_DATA``) holds the public datasets this workspace and CI use; a
clone without it falls back to ``tests/fixtures/data``, verbatim excerpts in the same layout written by
``scripts/make_fixtures.py``. Tests import ``SHARED`` from here (or use conftest's ``shared`` fixture).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FULL_SHARED = Path(os.environ.get("MEDPREF_SHARED_DATA", REPO.parent / "shared" / "data"))
FIXTURE_DATA = REPO / "tests" / "fixtures" / "data"
HAS_FULL_SHARED = FULL_SHARED.is_dir()
SHARED = FULL_SHARED if HAS_FULL_SHARED else FIXTURE_DATA
