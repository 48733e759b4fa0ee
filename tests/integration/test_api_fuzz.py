"""schemathesis over the OpenAPI schema: every operation, with and without valid tokens, no 5xx.

The schema is loaded at import (schemathesis parametrizes at collection); the vault behind the
app, its data and its token are made on first use in a temporary directory removed at the end.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from vault_store import Catalog, LocalBlobStore, LocalKms, Vault
from vault_store.api import create_app
from vault_store.core.message import Segment


class Fixture:
    """A small vault, made once, on first use."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.vault: Vault | None = None
        self.token = ""
        self._lock = threading.Lock()

    def get(self) -> Vault:
        with self._lock:
            if self.vault is None:
                self.root = Path(tempfile.mkdtemp(prefix="vault-fuzz-"))
                catalog = Catalog(f"sqlite:///{self.root / 'catalog.sqlite3'}")
                catalog.migrate()
                vault = Vault(
                    catalog=catalog,
                    blob_store=LocalBlobStore(self.root / "blobs"),
                    kms=LocalKms(self.root / "kek.json"),
                )
                for replay in ("a" * 32, "b" * 32):
                    for n in range(3):
                        vault.ingest_segment(
                            Segment(
                                project_id=0,
                                replay_id=replay,
                                segment_id=n,
                                body=b"[%d]" % n,
                                retention_days=30,
                            )
                        )
                vault.flush()
                # Project 0 is where generated ids most often land: the valid token covers it.
                self.token = vault.issue_token([0, 1], ["read", "delete", "audit"]).token
                self.vault = vault
            return self.vault


FIXTURE = Fixture()
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(FIXTURE.get))


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    if FIXTURE.vault is not None:
        FIXTURE.vault.close()
    if FIXTURE.root is not None:
        shutil.rmtree(FIXTURE.root, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_with_a_valid_token(case: Any) -> None:
    FIXTURE.get()
    case.call_and_validate(
        headers={"Authorization": f"Bearer {FIXTURE.token}"}, checks=[not_a_server_error]
    )


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_without_a_token(case: Any) -> None:
    case.call_and_validate(checks=[not_a_server_error])


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_with_a_forged_token(case: Any) -> None:
    case.call_and_validate(
        headers={"Authorization": "Bearer vst_0123456789ab_forged"}, checks=[not_a_server_error]
    )
