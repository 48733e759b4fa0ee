"""No secret in any log at any level: every logger at DEBUG across ingest, read, shred, overwrite,
rewrap and the API, then the log is searched for every wrapped key, key check, plaintext key,
token secret and piece of recording content the run handled."""

from __future__ import annotations

import base64
import io
import logging
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import VaultFactory
from vault_store import Scope
from vault_store.api import create_app
from vault_store.catalog.models import CatalogSecret, RecordingByteRange
from vault_store.core.message import Segment
from vault_store.kms.base import KeyContext

MARKER = f"content-{uuid.uuid4().hex}"
A, B = "a" * 32, "b" * 32


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Every logger, SQLAlchemy's engine and pool included, at DEBUG into one buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    saved = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    saved_root = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in [*logging.root.manager.loggerDict, "sqlalchemy.engine", "sqlalchemy.pool"]:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_root)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
        logging.getLogger("sqlalchemy.pool").setLevel(logging.WARNING)


def _forms(secret: bytes) -> list[str]:
    """How bytes could appear in a log line: repr, hex, base64, and a long-enough piece."""
    return [repr(secret), secret.hex(), base64.b64encode(secret).decode(), repr(secret)[2:30]]


def test_no_wrapped_key_key_check_plaintext_key_or_content_in_a_debug_log(
    make_vault: VaultFactory, debug_log: io.StringIO
) -> None:
    vault = make_vault()
    for replay in (A, B):
        for n in range(3):
            vault.ingest_segment(
                Segment(
                    1,
                    replay,
                    n,
                    f'[{{"type":3,"data":{{"text":"{MARKER}-{n}"}}}}]'.encode(),
                    30,
                    replay_event=b'{"user":{"email":"carol@example.com"}}',
                )
            )
    vault.flush()
    catalog = vault._catalog
    with catalog.engine.connect() as conn:
        before = conn.execute(
            select(
                RecordingByteRange.project_id,
                RecordingByteRange.replay_id,
                RecordingByteRange.wrapped_dek,
                RecordingByteRange.key_check,
            )
        ).all()
        secrets = [bytes(w) for w in conn.execute(select(CatalogSecret.wrapped)).scalars()]
    assert b"".join(vault.read_recording(1, A)).count(MARKER.encode()) == 3
    token = vault.issue_token([1], ["read", "delete"]).token
    with TestClient(create_app(lambda: vault)) as client:
        headers = {"Authorization": f"Bearer {token}"}
        reply = client.get(f"/v1/projects/1/replays/{A}/recording", headers=headers)
        assert MARKER in reply.text
        assert client.delete(f"/v1/projects/1/replays/{B}", headers=headers).status_code == 202
    vault.shred(Scope.USER, 1, user="nobody", requested_by="dpo", reason="r", overwrite=True)
    vault.run_overwrites()
    vault.rotate_local_key()
    vault.rewrap_keys(actor="test")
    with catalog.engine.connect() as conn:
        after = conn.execute(
            select(RecordingByteRange.wrapped_dek, RecordingByteRange.key_check)
        ).all()
    log = debug_log.getvalue()
    assert "SELECT" in log and "sqlalchemy.engine" in log  # the engine really logged at DEBUG
    found = []
    kms = vault._kms
    for project, replay, wrapped, check in before:
        plain = kms.unwrap(bytes(wrapped), KeyContext(project, replay)).reveal()
        for name, secret in (("wrapped key", wrapped), ("key check", check), ("key", plain)):
            found += [name for form in _forms(bytes(secret)) if form in log]
    for wrapped, _check in after:
        found += ["rewrapped key" for form in _forms(bytes(wrapped)) if form in log]
    for secret in secrets:
        found += ["wrapped secret" for form in _forms(secret) if form in log]
    found += ["recording content" for _ in [1] if MARKER in log]
    # vst_<hex id>_<secret>: the secret is token_urlsafe, which may itself hold "_", so it is
    # everything after the second underscore (a last "_" fragment can be two letters long and
    # turn up in any log by chance).
    token_secret = token.split("_", 2)[2]
    found += ["token" for _ in [1] if token in log or token_secret in log]
    found += ["user id" for _ in [1] if "carol@example.com" in log]
    assert found == [], sorted(set(found))
