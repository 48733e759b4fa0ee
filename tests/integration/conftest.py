"""Fixtures for the end-to-end tests: an environment for running the CLI as a process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import RECORDINGS_DIR


@pytest.fixture
def home(tmp_path: Path, database_url: str) -> dict[str, str]:
    """Environment for the CLI: its own home, on SQLite or on a fresh PostgreSQL schema."""
    return {
        **os.environ,
        "VAULT_STORE_HOME": str(tmp_path / "home"),
        "VAULT_STORE_DATABASE_URL": database_url,
        "VAULT_STORE_RECORDINGS": str(RECORDINGS_DIR),
    }
