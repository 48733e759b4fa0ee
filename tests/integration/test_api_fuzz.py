"""schemathesis over the OpenAPI schema: every operation, with and without valid tokens, every
per-response check (status codes, schemas, content types, headers, positive and negative data,
authentication), and `schemathesis run --checks all` against `vault-store serve` as a process.

Both read the repository's schemathesis.toml (a deleted replay's 410 is an accepted answer). The
schema is loaded at import (schemathesis parametrizes at collection); the vault behind the app,
its data and its tokens are made on first use in a temporary directory removed at the end.
Deletes run in their own test, aimed at their own project, so they never shred what the read
tests read.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.config import SchemathesisConfig

from tests.integration.helpers import run
from vault_store import Catalog, LocalBlobStore, LocalKms, Vault
from vault_store.api import create_app
from vault_store.core.message import Segment, build_message

REPO = Path(__file__).resolve().parents[2]
# Every check that judges one response (the CLI's --checks all adds the stateful ones, which the
# CLI test below runs).
ALL_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
    checks.positive_data_acceptance,
    checks.missing_required_header,
    checks.unsupported_method,
    checks.allow_header_conformance,
    checks.ignored_auth,
]
READ_PROJECTS = (0, 1)
# Deletes aim here only: the read tests' replays are never shredded under them.
DELETE_PROJECT = 2


class Fixture:
    """A small vault, made once, on first use."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.vault: Vault | None = None
        self.token = ""
        self.delete_token = ""
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
                for project in (*READ_PROJECTS, DELETE_PROJECT):
                    for replay in ("a" * 32, "b" * 32):
                        for n in range(3):
                            vault.ingest_segment(
                                Segment(
                                    project_id=project,
                                    replay_id=replay,
                                    segment_id=n,
                                    body=b"[%d]" % n,
                                    retention_days=30,
                                )
                            )
                vault.flush()
                # Project 0 is where generated ids most often land: the read token covers it.
                self.token = vault.issue_token(list(READ_PROJECTS), ["read", "audit"]).token
                self.delete_token = vault.issue_token(
                    [DELETE_PROJECT], ["read", "delete", "audit"]
                ).token
                self.vault = vault
            return self.vault


FIXTURE = Fixture()
CONFIG = SchemathesisConfig.from_path(REPO / "schemathesis.toml")
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(FIXTURE.get), config=CONFIG)
reads = schema.exclude(method="DELETE")
deletes = schema.include(method="DELETE")


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    if FIXTURE.vault is not None:
        FIXTURE.vault.close()
    if FIXTURE.root is not None:
        shutil.rmtree(FIXTURE.root, ignore_errors=True)


@reads.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_check_passes_with_a_valid_token(case: Any) -> None:
    FIXTURE.get()
    case.call_and_validate(headers={"Authorization": f"Bearer {FIXTURE.token}"}, checks=ALL_CHECKS)


@deletes.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_check_passes_for_deletes_in_their_own_project(case: Any) -> None:
    FIXTURE.get()
    meta = case.meta
    positive = meta is not None and meta.generation.mode.is_positive
    if positive and isinstance(case.path_parameters.get("project_id"), int):
        # Real deletes (202, then 410 for a replay already shredded), never of the read data.
        case.path_parameters["project_id"] = DELETE_PROJECT
    case.call_and_validate(
        headers={"Authorization": f"Bearer {FIXTURE.delete_token}"}, checks=ALL_CHECKS
    )


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_check_passes_without_a_token(case: Any) -> None:
    case.call_and_validate(checks=ALL_CHECKS)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_check_passes_with_a_forged_token(case: Any) -> None:
    case.call_and_validate(
        headers={"Authorization": "Bearer vst_0123456789ab_forged"}, checks=ALL_CHECKS
    )


def _serve(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "vault_store", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, "serve did not start"
        time.sleep(0.2)


def test_schemathesis_run_checks_all_finds_nothing(tmp_path: Path) -> None:
    """The CLI as the issue names it, stateful checks included, against the real server, with a
    token that may read and delete and without one (bounded: 10 examples per operation)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_STORE_")}
    env["VAULT_STORE_HOME"] = str(tmp_path / "home")
    messages = tmp_path / "m.msgpack"
    messages.write_bytes(
        b"".join(
            build_message(project_id=0, replay_id=replay, segment_id=n, body=b"[%d]" % n)
            for replay in ("a" * 32, "b" * 32)
            for n in range(3)
        )
    )
    assert run(env, "ingest", str(messages)).returncode == 0
    made = run(env, "token", "create", "--project", "0", "--scope", "read,delete,audit", "--json")
    token = json.loads(made.stdout)["token"]
    server, base = _serve(env)
    cli = Path(sys.executable).parent / "schemathesis"
    try:
        for headers in (["-H", f"Authorization: Bearer {token}"], []):
            done = subprocess.run(
                [
                    str(cli),
                    "--config-file",
                    str(REPO / "schemathesis.toml"),
                    "run",
                    f"{base}/openapi.json",
                    "--checks",
                    "all",
                    "--max-examples",
                    "10",
                    "--no-color",
                    *headers,
                ],
                capture_output=True,
                timeout=240,
                check=False,
                cwd=tmp_path,
            )
            out = done.stdout.decode(errors="replace")
            assert done.returncode == 0, out[-4000:]
            assert " passed" in out and "failure" not in out.lower(), out[-4000:]
    finally:
        server.terminate()
        server.wait(20)
