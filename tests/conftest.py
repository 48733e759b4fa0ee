"""Shared fixtures: real recordings, catalogs on SQLite and PostgreSQL, and ready vaults."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest
from sqlalchemy.engine import make_url

# gRPC's C core logs every GOAWAY of a stopped test server at INFO: keep test output readable.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from tests.peers.gcs import FaultProxy, GcsEmulator
from tests.peers.kms_server import KmsServer
from vault_store import BlobStore, Catalog, LocalBlobStore, LocalKms, Vault
from vault_store.core.rrweb import Event
from vault_store.services.samples import Recording, load_recordings
from vault_store.settings import FlushPolicy, ReadPolicy

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SERVER_PG_URL = os.environ.get(
    "VAULT_STORE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
# Under pytest-xdist each worker process has a database of its own (made on first use): advisory
# locks, which order flushes against deletions, are per database, so tests running side by side in
# schemas of one database would wait on each other's project locks.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_SERVER = make_url(SERVER_PG_URL)
PG_URL = (
    _SERVER.set(database=f"{_SERVER.database}_{XDIST_WORKER}").render_as_string(hide_password=False)
    if XDIST_WORKER
    else SERVER_PG_URL
)
RECORDINGS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "recordings"


def need(condition: bool, reason: str) -> None:
    """Skip outside CI when a peer is missing; under CI=true a missing peer fails the run."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing service is a failure)")
    pytest.skip(reason)


# Under pytest-xdist (`-n`) the worker tests take turns: they share the brokers, and one restarts
# RabbitMQ (tests/workers/conftest.py holds them to one at a time). They are collected first, so
# xdist's first batch of tests, which is larger than their number, gives them all to one process.
# (xdist's own `--dist loadgroup` does nothing on pytest 9.2, and its scope scheduling drops tests
# that share a node id, as schemathesis's do.)
ONE_AT_A_TIME = "tests/workers/"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if XDIST_WORKER:
        first = [item for item in items if item.nodeid.startswith(ONE_AT_A_TIME)]
        chosen = set(first)
        items[:] = first + [item for item in items if item not in chosen]


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    try:
        psycopg2.connect(SERVER_PG_URL, connect_timeout=3).close()
    except psycopg2.OperationalError:
        return False
    if PG_URL != SERVER_PG_URL:
        _create_database(make_url(PG_URL).database or "")
    return True


def _create_database(name: str) -> None:
    """Create this xdist worker's database unless it is there from an earlier run."""
    conn = psycopg2.connect(SERVER_PG_URL)
    conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                # Another run against this server may make it first: then it is there.
                with contextlib.suppress(psycopg2.errors.DuplicateDatabase):
                    cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """gcp-storage-emulator on 127.0.0.1, one process for the session."""
    emulator = GcsEmulator()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def gcs_proxy(gcs_emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """A fault-injecting proxy to the emulator, named by STORAGE_EMULATOR_HOST for the test."""
    proxy = FaultProxy(gcs_emulator.port)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def kms_server() -> Iterator[KmsServer]:
    """The Cloud KMS peer (real gRPC on 127.0.0.1), fresh keys and faults for each test."""
    server = KmsServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def recordings() -> list[Recording]:
    """Every real session recording in ../shared/data/recordings."""
    need(RECORDINGS_DIR.is_dir(), f"real recordings not found at {RECORDINGS_DIR}")
    found = load_recordings(RECORDINGS_DIR)
    assert len(found) >= 7
    return found


@pytest.fixture(scope="session")
def demo_events() -> list[Event]:
    """The rrweb player demo: 272 events over 81 s."""
    need(RECORDINGS_DIR.is_dir(), f"real recordings not found at {RECORDINGS_DIR}")
    (recording,) = [
        r for r in load_recordings(RECORDINGS_DIR) if r.name == "rrweb-player-demo-events"
    ]
    return recording.events


def _postgres_schema_url(request: pytest.FixtureRequest) -> Iterator[str]:
    need(request.getfixturevalue("postgres_available"), f"PostgreSQL not reachable at {PG_URL}")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg2.connect(PG_URL) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        conn = psycopg2.connect(PG_URL)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh schema in the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    else:
        yield from _postgres_schema_url(request)


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh schema in the real PostgreSQL, for behaviour only PostgreSQL has."""
    yield from _postgres_schema_url(request)


@pytest.fixture
def catalog(database_url: str) -> Iterator[Catalog]:
    """A migrated catalog on each database."""
    catalog = Catalog(database_url)
    catalog.migrate()
    yield catalog
    catalog.dispose()


VaultFactory = Callable[..., Vault]


@pytest.fixture
def make_vault(catalog: Catalog, tmp_path: Path) -> Iterator[VaultFactory]:
    """Build vaults over one catalog, blob directory and key file (several = several workers)."""
    made: list[Vault] = []

    def factory(
        *,
        flush: FlushPolicy | None = None,
        read: ReadPolicy | None = None,
        blob_store: BlobStore | None = None,
        **kwargs: object,
    ) -> Vault:
        vault = Vault(
            catalog=catalog,
            blob_store=blob_store or LocalBlobStore(tmp_path / "blobs"),
            kms=LocalKms(tmp_path / "kek.json"),
            flush_policy=flush,
            read_policy=read,
            **kwargs,  # type: ignore[arg-type]
        )
        made.append(vault)
        return vault

    yield factory
    for vault in made:
        vault._reader.close()


@pytest.fixture
def vault(make_vault: VaultFactory) -> Vault:
    """A vault with default policies."""
    return make_vault()
