"""The Sentry-shaped routes over real HTTP (uvicorn on 127.0.0.1), replaying the requests Sentry's
frontend makes, on SQLite and PostgreSQL; CORS; video; the settings they read."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import VaultFactory
from tests.integration.helpers import serving, tombstone
from vault_store import FlushPolicy, ReadPolicy, Vault
from vault_store.api import create_app
from vault_store.catalog import Catalog
from vault_store.core.message import Segment
from vault_store.core.rrweb import Event
from vault_store.errors import ConfigError
from vault_store.settings import ApiPolicy, Settings

REPLAY = "0123456789abcdef0123456789abcdef"
DASHED = "01234567-89ab-cdef-0123-456789abcdef"
OTHER = "f" * 32
PROJECT = 42
# Segment ids with gaps (0, 3, 6, ...): an offset is a count of stored segments, never an id.
STRIDE = 3
ALLOWED = "http://viewer.example:5173"


@dataclass
class Served:
    base: str
    vault: Vault
    catalog: Catalog
    auth: dict[str, str]
    events: list[Any]
    bodies: list[list[Any]]

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.base}{path}", headers=self.auth, params=params, timeout=30)


def _segments(events: list[Event]) -> list[list[Any]]:
    """The demo recording cut into segments of 1 to 3 events (uneven, as real ones are)."""
    plain: list[Any] = orjson.loads(orjson.dumps(events))
    cut: list[list[Any]] = []
    n = 0
    while n < len(plain):
        size = 1 + len(cut) % 3
        cut.append(plain[n : n + size])
        n += size
    return cut


@pytest.fixture
def served(
    make_vault: VaultFactory, catalog: Catalog, demo_events: list[Event]
) -> Iterator[Served]:
    # Typed parts: several rows per segment, so a page of segments is not a page of rows; small
    # flush and read pages, so a page spans blobs and is streamed in several chunks.
    vault = make_vault(
        flush=FlushPolicy(max_segments=40), read=ReadPolicy(page_segments=16), typed_parts=True
    )
    bodies = _segments(demo_events)
    for index, body in enumerate(bodies):
        vault.ingest_segment(
            Segment(
                project_id=PROJECT,
                replay_id=REPLAY,
                segment_id=index * STRIDE,
                body=orjson.dumps(body),
                retention_days=30,
            )
        )
    vault.ingest_segment(
        Segment(
            project_id=PROJECT,
            replay_id=OTHER,
            segment_id=0,
            body=b"[]",
            retention_days=30,
            replay_video=b"\x00\x00\x00\x18ftypmp42 video bytes",
        )
    )
    vault.flush()
    token = vault.issue_token([PROJECT], ["read"]).token
    policy = ApiPolicy(project_slugs={("acme", "web"): PROJECT}, cors_origins=(ALLOWED,))
    with serving(create_app(lambda: vault, policy=policy)) as base:
        yield Served(
            base,
            vault,
            catalog,
            {"Authorization": f"Bearer {token}"},
            orjson.loads(orjson.dumps(demo_events)),
            bodies,
        )


def _index(project: str = str(PROJECT), replay: str = REPLAY) -> str:
    return f"/api/0/projects/acme/{project}/replays/{replay}/recording-segments/"


def _links(header: str) -> dict[str, dict[str, str]]:
    """Sentry's Link header as {rel: {href, results, cursor}} (as parseLinkHeader reads it)."""
    found = {}
    for link in header.split(", <"):
        href, *attributes = link.split("; ")
        values = dict(a.split("=", 1) for a in attributes)
        values = {k: v.strip('"') for k, v in values.items()}
        found[values["rel"]] = {"href": href.strip("<>"), **values}
    return found


@pytest.mark.parametrize("per_page", [100, 17])
def test_the_frontends_parallel_offset_pages_give_back_the_recording(
    served: Served, per_page: int
) -> None:
    # As useReplayData does: every cursor computed up front from count_segments, all fetched at
    # once, each page stored under its cursor, then flattened twice (pages, then segments).
    count_segments = len(served.bodies)
    pages = -(-count_segments // per_page)
    cursors = [f"0:{per_page * i}:0" for i in range(pages)]
    with ThreadPoolExecutor(len(cursors)) as pool:
        replies = list(
            pool.map(
                lambda cursor: served.get(
                    _index(replay=DASHED), download="true", per_page=per_page, cursor=cursor
                ),
                cursors,
            )
        )
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    assert all(r.headers["content-type"] == "application/json" for r in replies)
    bodies = [r.json() for r in replies]
    # Exactly per_page segments a page (the last holds the rest), each segment once, in order.
    assert [len(b) for b in bodies] == [
        min(per_page, count_segments - per_page * i) for i in range(pages)
    ]
    assert [segment for body in bodies for segment in body] == served.bodies
    assert [event for body in bodies for segment in body for event in segment] == served.events
    nexts = [_links(r.headers["link"])["next"]["results"] for r in replies]
    assert nexts == ["true"] * (pages - 1) + ["false"]


def test_the_frontends_flow_starts_at_the_replay_details(served: Served) -> None:
    # useFetchReplayData: the details first, then count_segments sizes the parallel pages.
    details = served.get(f"/api/0/organizations/acme/replays/{DASHED}/")
    assert details.status_code == 200, details.text
    record = details.json()["data"]
    assert record["id"] == REPLAY
    assert record["project_id"] == str(PROJECT)
    assert record["count_segments"] == len(served.bodies)
    started = datetime.fromisoformat(record["started_at"])
    finished = datetime.fromisoformat(record["finished_at"])
    assert started.tzinfo is not None and started <= finished <= datetime.now(UTC)
    assert record["duration"] == round((finished - started).total_seconds())
    assert record["is_archived"] is False and isinstance(record["user"], dict)
    per_page = 17
    cursors = [f"0:{n}:0" for n in range(0, record["count_segments"], per_page)]
    path = f"/api/0/projects/acme/{record['project_id']}/replays/{record['id']}/recording-segments/"
    with ThreadPoolExecutor(len(cursors)) as pool:
        replies = list(
            pool.map(
                lambda cursor: served.get(path, download="true", per_page=per_page, cursor=cursor),
                cursors,
            )
        )
    assert [segment for reply in replies for segment in reply.json()] == served.bodies
    # The video-only replay has one segment; unknown ids and shredded replays answer as reads do.
    other = served.get(f"/api/0/organizations/acme/replays/{OTHER}/").json()["data"]
    assert other["count_segments"] == 1
    assert served.get(f"/api/0/organizations/acme/replays/{'e' * 32}/").status_code == 404
    tombstone(served.catalog, PROJECT, REPLAY)
    assert served.get(f"/api/0/organizations/acme/replays/{REPLAY}/").status_code == 410


def test_replay_details_look_only_in_the_tokens_projects(served: Served) -> None:
    elsewhere = served.vault.issue_token([PROJECT + 1], ["read"]).token
    no_read = served.vault.issue_token([PROJECT], ["delete"]).token
    for token in (elsewhere, no_read):
        reply = httpx.get(
            f"{served.base}/api/0/organizations/acme/replays/{REPLAY}/",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert reply.status_code == 404
    assert httpx.get(f"{served.base}/api/0/organizations/acme/replays/{REPLAY}/").status_code == 401


def test_link_header_is_sentrys(served: Served) -> None:
    reply = served.get(_index(), per_page=50, cursor="0:50:0", download="true")
    links = _links(reply.headers["link"])
    assert links["previous"]["results"] == "true" and links["previous"]["cursor"] == "0:0:1"
    assert links["next"]["results"] == "true" and links["next"]["cursor"] == "0:100:0"
    href = httpx.URL(links["next"]["href"])
    assert href.path == _index() and href.params["cursor"] == "0:100:0"
    assert href.params["per_page"] == "50" and href.params["download"] == "true"
    # Following the link gives the next page.
    following = httpx.get(links["next"]["href"], headers=served.auth, timeout=30)
    assert following.json() == served.bodies[100:150]
    first = _links(served.get(_index(), per_page=50).headers["link"])
    assert first["previous"]["results"] == "false" and first["previous"]["cursor"] == "0:0:1"


def test_slugs_dashes_and_sentrys_answers(served: Served) -> None:
    whole = served.get(_index(project="web"), per_page=5)
    assert whole.status_code == 200 and whole.json() == served.bodies[:5]
    assert served.get(_index(replay=REPLAY.upper()), per_page=5).json() == served.bodies[:5]
    # An unknown replay and a read past the end answer like an empty replay: [] and no next.
    for reply in (
        served.get(_index(replay="e" * 32)),
        served.get(_index(), cursor=f"0:{len(served.bodies)}:0"),
    ):
        assert reply.status_code == 200 and reply.json() == []
        assert _links(reply.headers["link"])["next"]["results"] == "false"
    # A slug nobody mapped, a project the token does not cover: 404, as in Sentry.
    assert served.get(_index(project="mobile")).status_code == 404
    assert served.get(_index(project="7")).status_code == 404
    assert served.get(_index(project=str(2**63))).status_code == 404
    for params in ({"per_page": 101}, {"per_page": 0}, {"cursor": "0:x:0"}, {"cursor": "5"}):
        bad = served.get(_index(), **params)
        assert bad.status_code == 400 and bad.json()["error"] == "bad_request", params
    assert served.get(_index(replay="0123")).status_code == 400
    # One segment by id (ids have gaps: 3 exists, 4 does not).
    one = served.get(_index() + f"{STRIDE}/", download="true")
    assert one.status_code == 200 and one.json() == served.bodies[1]
    assert served.get(_index() + "4/").status_code == 404


def test_video_is_streamed_as_sentry_serves_it(served: Served) -> None:
    path = f"/api/0/projects/acme/web/replays/{OTHER}/videos/0/"
    reply = served.get(path)
    assert reply.status_code == 200
    assert reply.content == b"\x00\x00\x00\x18ftypmp42 video bytes"
    assert reply.headers["content-type"] == "application/octet-stream"
    assert reply.headers["content-disposition"].startswith("attachment;")
    assert served.get(f"/api/0/projects/acme/web/replays/{OTHER}/videos/1/").status_code == 404
    assert served.get(f"/api/0/projects/acme/web/replays/{REPLAY}/videos/0/").status_code == 404
    assert served.get(f"/api/0/projects/acme/web/replays/{'e' * 32}/videos/0/").status_code == 404
    tombstone(served.catalog, PROJECT, OTHER)
    assert served.get(path).status_code == 410


def test_a_shredded_replay_answers_410(served: Served) -> None:
    tombstone(served.catalog, PROJECT, REPLAY)
    assert served.get(_index()).status_code == 410
    assert served.get(_index() + "0/").status_code == 410


def test_cors_allows_only_listed_origins(served: Served) -> None:
    preflight = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    allowed = httpx.options(
        f"{served.base}{_index()}", headers={"Origin": ALLOWED, **preflight}, timeout=10
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    refused = httpx.options(
        f"{served.base}{_index()}",
        headers={"Origin": "http://evil.example", **preflight},
        timeout=10,
    )
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
    read = httpx.get(
        f"{served.base}{_index()}",
        headers={"Origin": ALLOWED, **served.auth},
        params={"per_page": 1},
        timeout=10,
    )
    assert read.headers["access-control-allow-origin"] == ALLOWED
    assert "link" in read.headers["access-control-expose-headers"].lower()
    # Errors carry the header too, so the page can read why it failed.
    denied = httpx.get(f"{served.base}{_index()}", headers={"Origin": ALLOWED}, timeout=10)
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == ALLOWED


def test_without_origins_no_cors_headers(vault: Vault) -> None:
    with serving(create_app(lambda: vault, policy=ApiPolicy())) as base:
        reply = httpx.get(f"{base}/healthz", headers={"Origin": ALLOWED}, timeout=10)
        assert "access-control-allow-origin" not in reply.headers
        preflight = httpx.options(
            f"{base}{_index()}",
            headers={"Origin": ALLOWED, "Access-Control-Request-Method": "GET"},
            timeout=10,
        )
        assert "access-control-allow-origin" not in preflight.headers


def test_api_settings_are_read_and_checked() -> None:
    env = {
        "VAULT_STORE_HOME": "/nonexistent",
        "VAULT_STORE_API_PROJECT_SLUGS": "acme/web=42, acme/ios=7",
        "VAULT_STORE_API_CORS_ORIGINS": "https://a.example, http://localhost:5173",
    }
    api = Settings.from_env(env).api
    assert api.project_slugs == {("acme", "web"): 42, ("acme", "ios"): 7}
    assert api.cors_origins == ("https://a.example", "http://localhost:5173")
    for name, value in (
        ("VAULT_STORE_API_PROJECT_SLUGS", "acme-web=42"),
        ("VAULT_STORE_API_PROJECT_SLUGS", "acme/web=x"),
        ("VAULT_STORE_API_PROJECT_SLUGS", "acme/web=1,acme/web=2"),
        ("VAULT_STORE_API_CORS_ORIGINS", "https://a.example/path"),
        ("VAULT_STORE_API_CORS_ORIGINS", "a.example"),
    ):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({**env, name: value})
