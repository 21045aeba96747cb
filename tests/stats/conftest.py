"""Shared fixtures: the published reference datasets in ``../shared/data/stats-reference``."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("SHARED_DATA_DIR", REPO_ROOT / ".." / "shared" / "data"))
REFERENCE = SHARED_DATA / "stats-reference"


@pytest.fixture(scope="session")
def reference() -> Path:
    return REFERENCE
