"""Helpers for end-to-end tests: reading replays back, tombstoning by hand, running the CLI,
serving an app over real HTTP."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Connection, insert

from vault_store import Vault
from vault_store.catalog import Catalog
from vault_store.catalog.models import Deletion, Tombstone


def read_events(vault: Vault, project_id: int, replay_id: str) -> list[Any]:
    """The merged recording as parsed JSON: one list of events per segment."""
    document = orjson.loads(b"".join(vault.read_recording(project_id, replay_id)))
    assert isinstance(document, list)
    return document


def tombstone(catalog: Catalog, project_id: int, replay_id: str | None) -> None:
    """Record a deletion of a replay (or, with None, a whole project) straight in the catalog."""
    with catalog.engine.begin() as conn:
        write_tombstone(conn, project_id, replay_id)


def write_tombstone(conn: Connection, project_id: int, replay_id: str | None) -> None:
    """The rows a deletion request writes (a deletion and its tombstone), on `conn`."""
    deletion = uuid.uuid4().hex
    now = datetime.now(UTC)
    conn.execute(
        insert(Deletion).values(
            id=deletion,
            scope="replay" if replay_id else "project",
            project_id=project_id,
            target=replay_id,
            requested_by="test",
            reason="test",
            requested_at=now,
            status="done",
            rows_deleted=0,
            bytes_shredded=0,
            replays_deleted=0,
            overwrite_requested=False,
        )
    )
    conn.execute(
        insert(Tombstone).values(
            project_id=project_id, replay_id=replay_id, deletion_id=deletion, created_at=now
        )
    )


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    """`vault-store ARGS` as a real process with `env`."""
    return subprocess.run(
        [sys.executable, "-m", "vault_store", *args],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """The app on a real socket (uvicorn in a thread), its base URL while the block runs."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


DriverHook = Callable[[str, Any, Any], None]


@contextmanager
def after_each_driver_statement(catalog: Catalog, hook: DriverHook) -> Iterator[None]:
    """Call `hook(statement, parameters, driver_connection)` after each statement that the
    catalog's pooled driver connections execute: reads and the tombstone check run there
    (Catalog._driver_cursor), past SQLAlchemy's events."""
    engine = catalog.engine
    raw_connection = engine.raw_connection

    class Cursor:
        def __init__(self, cursor: Any, connection: Any) -> None:
            self._cursor, self._connection = cursor, connection

        def execute(self, statement: str, parameters: Any = ()) -> Any:
            done = self._cursor.execute(statement, parameters)
            hook(statement, parameters, self._connection)
            return done

        def __getattr__(self, name: str) -> Any:
            return getattr(self._cursor, name)

    class Connection:
        def __init__(self) -> None:
            self._connection = raw_connection()

        def cursor(self) -> Cursor:
            return Cursor(self._connection.cursor(), self._connection.driver_connection)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._connection, name)

    engine.raw_connection = Connection  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        del engine.raw_connection


@contextmanager
def driver_statements(catalog: Catalog, containing: str) -> Iterator[list[tuple[str, Any]]]:
    """(statement, parameters) of what the catalog's pooled driver connections execute that
    contain `containing` (see after_each_driver_statement)."""
    seen: list[tuple[str, Any]] = []

    def record(statement: str, parameters: Any, _connection: Any) -> None:
        if containing in statement:
            seen.append((statement, parameters))

    with after_each_driver_statement(catalog, record):
        yield seen
