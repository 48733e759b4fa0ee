"""The read API over HTTP (httpx against the app), on SQLite and PostgreSQL: every endpoint, every error."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from tests.conftest import VaultFactory
from tests.integration.helpers import driver_statements
from vault_store import BackendUnavailable, FlushPolicy, ReadPolicy, Vault
from vault_store.api import create_app
from vault_store.blobstore import LocalBlobStore
from vault_store.core.message import Segment

A, B = "a" * 32, "b" * 32
SEGMENTS = 120


@dataclass
class Api:
    client: TestClient
    vault: Vault
    tokens: dict[str, str]

    def get(
        self,
        path: str,
        token: str | None = "full",
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        merged = dict(headers or {})
        if token:
            merged["Authorization"] = f"Bearer {self.tokens[token]}"
        reply: httpx.Response = self.client.get(path, headers=merged, params=params)
        return reply


def _fill(vault: Vault) -> None:
    for n in range(SEGMENTS):
        vault.ingest_segment(
            Segment(
                project_id=1, replay_id=A, segment_id=n, body=b'[{"n":%d}]' % n, retention_days=30
            )
        )
    vault.ingest_segment(
        Segment(project_id=2, replay_id=B, segment_id=0, body=b'[{"n":0}]', retention_days=30)
    )
    vault.flush()


@pytest.fixture
def api(make_vault: VaultFactory) -> Iterator[Api]:
    vault = make_vault(flush=FlushPolicy(max_segments=30), read=ReadPolicy(page_segments=30))
    _fill(vault)
    tokens = {
        "full": vault.issue_token([1], ["read", "delete"], label="player").token,
        "read": vault.issue_token([1], ["read"]).token,
        "audit": vault.issue_token([1], ["audit"]).token,
        "other": vault.issue_token([2], ["read", "delete"]).token,
    }
    with TestClient(create_app(lambda: vault)) as client:
        yield Api(client, vault, tokens)


def test_segments_are_paged_by_cursor(api: Api) -> None:
    ids, cursor, pages = [], None, 0
    while True:
        params = {"per_page": 50} | ({"cursor": cursor} if cursor is not None else {})
        reply = api.get(f"/v1/projects/1/replays/{A}/segments", params=params)
        assert reply.status_code == 200
        body = reply.json()
        ids += [s["id"] for s in body["segments"]]
        assert all(s["parts"] == ["recording"] and s["stored_bytes"] > 29 for s in body["segments"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert ids == list(range(SEGMENTS)) and pages == 3


def test_recording_pages_concatenate_to_the_whole_replay(api: Api) -> None:
    whole = orjson.loads(b"".join(api.vault.read_recording(1, A)))
    got: list[Any] = []
    cursor: int | None = 0
    while cursor is not None:
        reply = api.get(
            f"/v1/projects/1/replays/{A}/recording", params={"cursor": cursor, "per_page": 45}
        )
        assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
        got += reply.json()
        next_cursor = reply.headers.get("x-next-cursor")
        cursor = int(next_cursor) if next_cursor else None
    assert got == whole == [[{"n": n}] for n in range(SEGMENTS)]


def test_recording_is_compressed_for_clients_that_accept_it(api: Api) -> None:
    reply = api.get(f"/v1/projects/1/replays/{A}/recording", headers={"Accept-Encoding": "gzip"})
    assert reply.headers["content-encoding"] == "gzip"
    assert len(reply.json()) == 100  # the default page
    plain = api.get(
        f"/v1/projects/1/replays/{A}/recording", headers={"Accept-Encoding": "identity"}
    )
    assert "content-encoding" not in plain.headers


class HoldingStore(LocalBlobStore):
    """Holds every ranged GET after the first until released, to see what leaves before."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.release = threading.Event()
        self.gets = 0

    def get_range(self, path: str, start: int, stop: int) -> bytes:
        self.gets += 1
        if self.gets > 1:
            assert self.release.wait(timeout=20)
        return super().get_range(path, start, stop)


def test_recording_streams_before_every_blob_is_fetched(api: Api, tmp_path: Path) -> None:
    store = HoldingStore(tmp_path / "blobs")
    api.vault._reader._blob_store = store
    headers = {"Authorization": f"Bearer {api.tokens['full']}", "Accept-Encoding": "identity"}
    with api.client.stream(
        "GET", f"/v1/projects/1/replays/{A}/recording", headers=headers
    ) as reply:
        chunks = reply.iter_raw()
        first = b""
        while b'{"n":0}' not in first:  # the first segment's events, from the first blob only
            first += next(chunks)
        assert first.startswith(b"[[")
        assert not store.release.is_set()  # they left while every later blob was still held
        store.release.set()
        body = first + b"".join(chunks)
    assert len(orjson.loads(body)) == 100 and store.gets >= 4


def test_one_segment(api: Api) -> None:
    assert api.get(f"/v1/projects/1/replays/{A}/segments/7").json() == [{"n": 7}]
    missing = api.get(f"/v1/projects/1/replays/{A}/segments/{SEGMENTS}")
    assert missing.status_code == 404


def test_another_projects_replay_looks_exactly_like_no_replay(api: Api) -> None:
    foreign = api.get(f"/v1/projects/2/replays/{B}/recording")
    never = api.get(f"/v1/projects/1/replays/{'c' * 32}/recording")
    assert foreign.status_code == never.status_code == 404
    assert foreign.json() == never.json() == {"error": "not_found", "message": "no such replay"}
    assert api.get(f"/v1/projects/2/replays/{B}/recording", token="other").status_code == 200


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        (f"/v1/projects/1/replays/{A.upper()}/recording", "replay_id"),
        ("/v1/projects/1/replays/abc/segments", "replay_id"),
        (f"/v1/projects/-1/replays/{A}/segments", "project_id"),
        (f"/v1/projects/{2**64}/replays/{A}/segments", "project_id"),
        (f"/v1/projects/x/replays/{A}/segments", "project_id"),
        (f"/v1/projects/1/replays/{A}/segments?per_page=0", "per_page"),
        (f"/v1/projects/1/replays/{A}/segments?per_page=101", "per_page"),
        (f"/v1/projects/1/replays/{A}/recording?cursor=-1", "cursor"),
        (f"/v1/projects/1/replays/{A}/recording?cursor=soon", "cursor"),
        (f"/v1/projects/1/replays/{A}/segments/-3", "segment_id"),
        (f"/v1/projects/{2**63}/replays/{A}/segments", "project_id"),
        (f"/v1/projects/1/replays/{A}/recording?cursor={2**63}", "cursor"),
    ],
)
def test_bad_input_is_400_naming_the_parameter(api: Api, path: str, problem: str) -> None:
    reply = api.get(path)
    assert reply.status_code == 400
    assert reply.json()["error"] == "bad_request" and problem in reply.json()["message"]


def test_authentication_and_permissions(api: Api) -> None:
    path = f"/v1/projects/1/replays/{A}/segments"
    assert api.get(path, token=None).status_code == 401
    assert (
        api.client.get(path, headers={"Authorization": "Bearer vst_000000000000_nope"}).status_code
        == 401
    )
    assert (
        api.client.get(path, headers={"Authorization": f"Basic {api.tokens['full']}"}).status_code
        == 401
    )
    assert api.get(path, token="audit").status_code == 403
    denied = api.client.delete(
        f"/v1/projects/1/replays/{A}", headers={"Authorization": f"Bearer {api.tokens['read']}"}
    )
    assert denied.status_code == 403
    token_id = api.tokens["read"].split("_")[1]
    assert api.vault.revoke_token(token_id)
    assert api.get(path, token="read").status_code == 401
    tampered = api.tokens["full"][:-2] + ("AA" if not api.tokens["full"].endswith("AA") else "BB")
    assert api.client.get(path, headers={"Authorization": f"Bearer {tampered}"}).status_code == 401


def test_delete_is_202_then_410_and_its_status_is_scoped(api: Api) -> None:
    headers = {"Authorization": f"Bearer {api.tokens['full']}"}
    reply = api.client.delete(
        f"/v1/projects/1/replays/{A}", params={"overwrite": "true"}, headers=headers
    )
    assert reply.status_code == 202
    deletion_id = reply.json()["deletion_id"]
    assert api.get(f"/v1/projects/1/replays/{A}/recording").status_code == 410
    status = api.get(f"/v1/deletions/{deletion_id}").json()
    assert (status["status"], status["rows_deleted"], status["overwrite_requested"]) == (
        "done",
        SEGMENTS,
        True,
    )
    assert status["requested_by"].startswith("token:") and "player" in status["requested_by"]
    assert api.get(f"/v1/deletions/{deletion_id}", token="audit").status_code == 200
    assert api.get(f"/v1/deletions/{deletion_id}", token="read").status_code == 403
    assert api.get(f"/v1/deletions/{deletion_id}", token="other").status_code == 404
    assert api.get(f"/v1/deletions/{'0' * 32}").status_code == 404
    foreign = api.client.delete(f"/v1/projects/2/replays/{B}", headers=headers)
    assert foreign.status_code == 404
    again = api.client.delete(f"/v1/projects/1/replays/{A}", headers=headers)
    assert again.status_code == 410
    assert (again.json()["status"], again.json()["previous_deletion_id"]) == (
        "nothing_held",
        deletion_id,
    )
    never = api.client.delete(f"/v1/projects/1/replays/{'e' * 32}", headers=headers)
    assert (never.status_code, never.json()["status"]) == (404, "nothing_held")
    recorded = api.get(f"/v1/deletions/{never.json()['deletion_id']}").json()
    assert (recorded["status"], recorded["replays_deleted"]) == ("nothing_held", 0)
    documented = api.client.get("/openapi.json").json()["paths"]
    answers = documented["/v1/projects/{project_id}/replays/{replay_id}"]["delete"]["responses"]
    assert {"202", "404", "410"} <= set(answers)
    assert api.get(f"/v1/projects/2/replays/{B}/recording", token="other").status_code == 200


class DownStore(LocalBlobStore):
    def get_range(self, path: str, start: int, stop: int) -> bytes:
        raise BackendUnavailable("injected", backend="test", op="get_range")


def test_backend_outage_is_503_with_retry_after(api: Api, tmp_path: Path) -> None:
    api.vault._reader._blob_store = DownStore(tmp_path / "blobs")
    reply = api.get(f"/v1/projects/1/replays/{A}/recording")
    assert reply.status_code == 503
    assert reply.headers["retry-after"] == "5" and reply.json()["error"] == "unavailable"


def test_health_metrics_and_openapi(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    api.get(f"/v1/projects/1/replays/{A}/recording")
    metrics = api.client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert (
        'vault_store_http_requests_total{method="GET",route="/v1/projects/{project_id}/replays/{replay_id}/recording",status="2xx"} 1.0'
        in text
    )
    assert "vault_store_kms_unwraps_total 1.0" in text
    assert (
        "vault_store_http_request_seconds_bucket" in text
        and "vault_store_key_cache_hits_total" in text
    )
    schema = api.client.get("/openapi.json").json()
    assert set(schema["paths"]) >= {
        "/v1/projects/{project_id}/replays/{replay_id}/segments",
        "/v1/projects/{project_id}/replays/{replay_id}/recording",
        "/v1/projects/{project_id}/replays/{replay_id}/segments/{segment_id}",
        "/v1/projects/{project_id}/replays/{replay_id}",
        "/v1/deletions/{deletion_id}",
    }


def test_responses_are_capped_and_continue_by_cursor(make_vault: VaultFactory) -> None:
    from vault_store.api import ApiLimits

    vault = make_vault(flush=FlushPolicy(max_segments=30))
    _fill(vault)
    token = vault.issue_token([1], ["read"]).token
    with TestClient(create_app(lambda: vault, limits=ApiLimits(max_response_bytes=200))) as client:
        reply = client.get(
            f"/v1/projects/1/replays/{A}/recording", headers={"Authorization": f"Bearer {token}"}
        )
    segments = reply.json()
    assert 1 <= len(segments) < 10  # a few ~40-byte frames fit in 200 sealed bytes
    assert reply.headers["x-next-cursor"] == str(len(segments))


class SlowStore(LocalBlobStore):
    def get_range(self, path: str, start: int, stop: int) -> bytes:
        time.sleep(2)
        return super().get_range(path, start, stop)


def test_a_request_without_a_first_byte_in_time_is_503(
    make_vault: VaultFactory, tmp_path: Path
) -> None:
    from vault_store.api import ApiLimits

    vault = make_vault()
    _fill(vault)
    vault._reader._blob_store = SlowStore(tmp_path / "blobs")
    token = vault.issue_token([1], ["read"]).token
    app = create_app(
        lambda: vault, limits=ApiLimits(request_timeout_seconds=0.3, retry_after_seconds=7)
    )
    with TestClient(app) as client:
        reply = client.get(
            f"/v1/projects/1/replays/{A}/recording", headers={"Authorization": f"Bearer {token}"}
        )
        assert reply.status_code == 503
        assert reply.json()["error"] == "timeout" and reply.headers["retry-after"] == "7"
        metrics = client.get("/metrics").text
    assert (
        'route="/v1/projects/{project_id}/replays/{replay_id}/recording",status="5xx"} 1.0'
        in metrics
    )


def test_secrets_with_underscores_authenticate(make_vault: VaultFactory) -> None:
    vault = make_vault()
    issued = [vault.issue_token([1], ["read"]) for _ in range(40)]
    tricky = [i for i in issued if "_" in i.token.split("_", 2)[2]]
    assert tricky  # token_urlsafe uses '_' in about 3 of 4 secrets of this length
    for item in tricky:
        assert vault.authenticate(item.token) == item.principal


@pytest.fixture
def range_queries(api: Api) -> Iterator[list[tuple[str, Any]]]:
    """Every statement that reads recording_byte_range, as the catalog sends it: through
    SQLAlchemy, or on a pooled driver connection (as reads do)."""
    from sqlalchemy import event

    catalog = api.vault._catalog
    with driver_statements(catalog, "recording_byte_range") as seen:

        def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            if "recording_byte_range" in statement:
                seen.append((statement, parameters))

        event.listen(catalog.engine, "before_cursor_execute", record)
        yield seen
        event.remove(catalog.engine, "before_cursor_execute", record)


def test_one_page_is_one_range_query(api: Api, range_queries: list[tuple[str, Any]]) -> None:
    api.get(f"/v1/projects/1/replays/{A}/recording")  # authenticate once, warm the pool
    range_queries.clear()
    # 100 segments over four blobs, decoded in four pieces of page_segments = 30: still one query.
    reply = api.get(f"/v1/projects/1/replays/{A}/recording")
    assert reply.status_code == 200 and len(reply.json()) == 100
    assert len(range_queries) == 1
    range_queries.clear()
    assert (
        api.get(f"/v1/projects/1/replays/{A}/segments", params={"cursor": 100}).status_code == 200
    )
    assert len(range_queries) == 1
    range_queries.clear()
    assert api.get(f"/v1/projects/1/replays/{A}/segments/7").status_code == 200
    assert len(range_queries) == 1
    range_queries.clear()
    # Past the end the page is empty: one more look tells "read past the end" from "unknown".
    past = api.get(f"/v1/projects/1/replays/{A}/recording", params={"cursor": SEGMENTS})
    assert past.status_code == 200 and past.json() == [] and "x-next-cursor" not in past.headers
    assert len(range_queries) == 2


def _series(text: str) -> set[str]:
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line and line[0] != "#"}


def test_metrics_series_are_bounded_whatever_is_requested(api: Api) -> None:
    """Unknown paths, made-up methods and every status fill only fixed label sets."""
    for n in range(3):  # every kind of request once, then count the series
        api.client.get(f"/v1/projects/1/replays/{n:032x}/recording")
        api.client.get(f"/no/such/path/{n}")
        api.client.request("BREW", f"/coffee/{n}")
        api.get(f"/v1/projects/1/replays/{A}/segments")
        api.get(f"/v1/projects/{n + 2}/replays/{A}/segments")
        api.client.get("/metrics")
    before = _series(api.client.get("/metrics").text)
    for n in range(100):
        api.client.get(f"/v1/projects/1/replays/{n + 10:032x}/recording")
        api.client.get(f"/no/such/path/{uuid.uuid4().hex}")
        api.client.request(f"M{n}", f"/{uuid.uuid4().hex}")
        api.get(f"/v1/projects/{n + 2}/replays/{A}/segments")
    after = _series(api.client.get("/metrics").text)
    assert after == before
    assert not any("/no/such" in series or "/coffee" in series for series in after)


def test_metrics_can_require_a_token(make_vault: VaultFactory) -> None:
    vault = make_vault()
    with TestClient(create_app(lambda: vault, metrics_token="s3cret-metrics")) as client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics"})
        assert right.status_code == 200 and "vault_store_http_requests_total" in right.text
