"""The replay viewer in headless Chromium, against `vault-store serve` as a real process.

A real recording (rrweb's player demo, with Sentry-SDK-shaped console breadcrumbs and network
spans added) is ingested as relay messages; the viewer page plays it through the API with the
npm-installed rrweb-player, and the replayed DOM is compared at several instants with a player
fed the original events directly (not through the vault), and with what the recording's own
text mutations say the page showed. A shredded replay shows the deleted state; a page of
another origin can read the API only when its origin is allowed (CORS).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import BrowserContext, Page

from tests.conftest import RECORDINGS_DIR, need
from tests.integration.browser import VIEWER_DIR, chromium, player_package, viewer_settled
from tests.integration.helpers import run
from tests.peers.gcs import free_port
from vault_store.api import create_app
from vault_store.api.viewer import CDN_BASE, INTEGRITY, RRWEB_PLAYER_VERSION
from vault_store.core.message import build_message
from vault_store.errors import ConfigError
from vault_store.settings import ApiPolicy, Settings
from vault_store.vault import Vault

PROJECT = 7
REPLAY = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
GONE = "f" * 32
# The same events one per segment: 282 segments, so the viewer reads three pages of 100.
LONG = "1" * 32
DEMO = RECORDINGS_DIR / "rrweb" / "rrweb-player-demo-events.json"
# Instants (ms from the start) to compare: before any mutation, mid-run, after the first
# structural mutation, and after the 352-node rewrite at 71 s.
INSTANTS = [200, 30_000, 47_000, 76_000]
XSS = '<img src=x onerror="window.__xss=1">'


def _sentry_events(start: int) -> list[dict[str, Any]]:
    """Frames as Sentry's browser SDK records them (custom events, seconds in the payload)."""

    def crumb(at: int, category: str, **payload: Any) -> dict[str, Any]:
        body = {"timestamp": at / 1000, "type": "default", "category": category, **payload}
        return {"type": 5, "timestamp": at, "data": {"tag": "breadcrumb", "payload": body}}

    def span(at: int, op: str, url: str, took: int, **data: Any) -> dict[str, Any]:
        body = {
            "op": op,
            "description": url,
            "startTimestamp": at / 1000,
            "endTimestamp": (at + took) / 1000,
            "data": data,
        }
        return {"type": 5, "timestamp": at, "data": {"tag": "performanceSpan", "payload": body}}

    return [
        {"type": 5, "timestamp": start + 1, "data": {"tag": "options", "payload": {}}},
        span(start + 5, "navigation.navigate", "https://shop.example/cart", 300, size=900),
        crumb(
            start + 2_000,
            "console",
            level="log",
            message="cart loaded 3",
            data={"logger": "console", "arguments": ["cart loaded", 3]},
        ),
        span(start + 3_000, "resource.img", "https://cdn.example/logo.png", 40, statusCode=200),
        crumb(start + 12_000, "ui.click", message="button#pay"),
        span(
            start + 12_100,
            "resource.fetch",
            "https://api.example/pay",
            120,
            method="POST",
            statusCode=500,
        ),
        crumb(
            start + 12_300,
            "console",
            level="error",
            message=XSS,
            data={"logger": "console", "arguments": [XSS]},
        ),
        span(start + 20_000, "memory", "memory", 0, memory={"usedJSHeapSize": 1}),
        span(start + 40_000, "resource.xhr", "https://api.example/poll", 80, method="GET"),
        crumb(
            start + 60_000,
            "console",
            level="warn",
            message="slow poll",
            data={"logger": "console", "arguments": ["slow poll"]},
        ),
    ]


def _recording() -> list[dict[str, Any]]:
    need(DEMO.is_file(), f"real recordings not found at {DEMO}")
    events: list[dict[str, Any]] = orjson.loads(DEMO.read_bytes())
    merged = events + _sentry_events(events[0]["timestamp"])
    merged.sort(key=lambda event: event["timestamp"])
    return merged


def _played(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the player gets: rrweb's events, not Sentry's frames (listed beside it instead)."""
    tags = ("breadcrumb", "performanceSpan", "options")
    return [e for e in events if not (isinstance(e["data"], dict) and e["data"].get("tag") in tags)]


def _segments(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Cut as Sentry's SDK does: a segment per 5 s of activity."""
    start = events[0]["timestamp"]
    cut: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        cut.setdefault((event["timestamp"] - start) // 5_000, []).append(event)
    return [cut[key] for key in sorted(cut)]


class _Page(http.server.BaseHTTPRequestHandler):
    """A site of another origin: a plain page at /, and the viewer page (its files fetched from
    the vault server, as a site hosting the viewer itself would) under /viewer."""

    api = ""  # the vault server, set once it listens

    def do_GET(self) -> None:
        if self.path.startswith("/viewer"):
            got = httpx.get(self.api + self.path, timeout=30)
            body, kind = got.content, got.headers["content-type"]
        else:
            body, kind = (
                b"<!doctype html><title>other origin</title><p>another site</p>",
                "text/html",
            )
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Site:
    base: str
    token: str
    events: list[dict[str, Any]]
    allowed: str  # an origin in VAULT_STORE_API_CORS_ORIGINS
    denied: str  # an origin that is not


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    package = player_package()
    root = tmp_path_factory.mktemp("viewer")
    others = [
        http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page),
        http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page),
    ]
    for other in others:
        threading.Thread(target=other.serve_forever, daemon=True).start()
    allowed, denied = (f"http://127.0.0.1:{other.server_address[1]}" for other in others)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_STORE_")}
    env |= {
        "VAULT_STORE_HOME": str(root / "home"),
        "VAULT_STORE_VIEWER_ASSETS": str(package),
        "VAULT_STORE_API_CORS_ORIGINS": allowed,
    }
    events = _recording()
    messages = root / "replays.msgpack"
    cuts = {REPLAY: _segments(events), GONE: _segments(events), LONG: [[e] for e in events]}
    messages.write_bytes(
        b"".join(
            build_message(
                project_id=PROJECT, replay_id=replay, segment_id=n, body=orjson.dumps(segment)
            )
            for replay, segments in cuts.items()
            for n, segment in enumerate(segments)
        )
    )
    assert run(env, "ingest", str(messages)).returncode == 0
    made = run(env, "token", "create", "--project", str(PROJECT), "--scope", "read", "--json")
    token = json.loads(made.stdout)["token"]
    shred = ("delete", "replay", "--project", str(PROJECT), "--replay", GONE)
    assert run(env, *shred, "--by", "test", "--reason", "viewer test").returncode == 0
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "vault_store", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    _Page.api = base
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        yield Site(base, token, events, allowed, denied)
    finally:
        server.terminate()
        server.wait(20)
        for other in others:
            other.shutdown()
            other.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    with chromium() as context:
        yield context


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    opened = browser.new_page()
    try:
        yield opened
    finally:
        opened.close()


def _open(page: Page, site: Site, replay: str, token: str) -> str:
    """Fill the viewer's form and submit; the state the page reaches."""
    page.goto(f"{site.base}/viewer")
    page.fill("#project", str(PROJECT))
    page.fill("#replay", replay)
    page.fill("#token", token)
    page.click("#go")
    return viewer_settled(page)


# The replayed document, element by element (tag, sorted attributes) and text by text.
_DOM_AT = """([offset, global]) => {
  const player = global ? window[global] : window.vaultViewer.player;
  const replayer = player.getReplayer();
  replayer.pause(offset);
  const doc = replayer.iframe.contentDocument;
  const lines = [];
  const walk = (node, depth) => {
    if (node.nodeType === 1) {
      const attrs = [...node.attributes].map((a) => a.name + '=' + a.value).sort().join(' ');
      lines.push(depth + '<' + node.tagName.toLowerCase() + ' ' + attrs);
      for (const child of node.childNodes) walk(child, depth + 1);
    } else if (node.nodeType === 3 && node.data.trim()) {
      lines.push(depth + '#' + node.data.trim());
    }
  };
  walk(doc.documentElement, 0);
  return {lines, elements: doc.getElementsByTagName('*').length};
}"""

_TEXT_OF = """([id, global]) => {
  const player = global ? window[global] : window.vaultViewer.player;
  const node = player.getReplayer().getMirror().getNode(id);
  return node ? node.textContent : null;
}"""


def _counter_at(events: list[dict[str, Any]], offset: int) -> tuple[int, str]:
    """The node the recording's last text mutation at or before `offset` changed (a counter)
    and the text it set; before any, the first such node's text in the full snapshot
    (computed from the recording, without rrweb)."""
    start = events[0]["timestamp"]
    changes = [
        (event["timestamp"] - start, text["id"], text["value"])
        for event in events
        if event["type"] == 3 and event["data"].get("source") == 0
        for text in event["data"]["texts"]
    ]
    before = [(id_, value) for at, id_, value in changes if at <= offset]
    if before:
        return before[-1]
    node = changes[0][1]
    (snapshot,) = (event for event in events if event["type"] == 2)

    def find(tree: dict[str, Any]) -> str | None:
        if tree.get("id") == node:
            return str(tree["textContent"])
        for child in tree.get("childNodes", []):
            found = find(child)
            if found is not None:
                return found
        return None

    found = find(snapshot["data"]["node"])
    assert found is not None
    return node, found


def _snapshot_elements(events: list[dict[str, Any]]) -> int:
    """Element nodes of the recording's full snapshot."""
    (snapshot,) = (event for event in events if event["type"] == 2)

    def count(node: dict[str, Any]) -> int:
        own = 1 if node["type"] == 2 else 0
        return own + sum(count(child) for child in node.get("childNodes", []))

    return count(snapshot["data"]["node"])


def _reference(page: Page, events: list[dict[str, Any]]) -> None:
    """A second player on a blank page, fed the original events directly (no vault, no API)."""
    page.set_content("<!doctype html><body><div id=ref></div></body>")
    page.add_script_tag(path=str(player_package() / "umd" / "rrweb-player.js"))
    page.evaluate(
        """(events) => {
          const Player = window.rrwebPlayer.default || window.rrwebPlayer;
          window.reference = new Player({target: document.getElementById('ref'),
            props: {events, autoPlay: false, width: 1024, height: 614, mouseTail: false}});
        }""",
        events,
    )


def test_the_viewer_plays_the_recording_through_the_api(
    site: Site, page: Page, browser: BrowserContext
) -> None:
    assert _open(page, site, REPLAY, site.token) == "ready"
    played = page.evaluate("window.vaultViewer.events.length")
    assert played == len(_played(site.events)) == len(site.events) - 10
    reference = browser.new_page()
    try:
        _reference(reference, _played(site.events))
        seen = []
        for offset in INSTANTS:
            got = page.evaluate(_DOM_AT, [offset, None])
            expected = reference.evaluate(_DOM_AT, [offset, "reference"])
            assert got["lines"] == expected["lines"], f"replayed DOM differs at {offset} ms"
            assert len(got["lines"]) > 200  # a whole page, not two empty documents
            seen.append(got["lines"])
            node, text = _counter_at(site.events, offset)
            assert page.evaluate(_TEXT_OF, [node, None]) == text, f"at {offset} ms"
        # Before any mutation, the page is the full snapshot: every element rebuilt (rrweb adds
        # its own style element to the head).
        assert len({tuple(lines) for lines in seen}) == len(INSTANTS)  # it changed each time
        first = page.evaluate(_DOM_AT, [INSTANTS[0], None])
        assert first["elements"] - _snapshot_elements(site.events) in (0, 1)
    finally:
        reference.close()


def test_console_and_network_lists_come_from_part_reads(site: Site, page: Page) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    assert _open(page, site, REPLAY, site.token) == "ready"
    assert any("part=console" in url for url in requests)
    assert any("part=network" in url for url in requests)
    console = page.locator("#console li").all_inner_texts()
    network = page.locator("#network li").all_inner_texts()
    # What Sentry's console tab lists: the console breadcrumbs (not the click).
    assert len(console) == 3
    assert console[0].endswith("[log] cart loaded 3")
    assert console[1].endswith(f"[error] {XSS}")  # recorded text stays text
    assert console[2].startswith("01:00") and console[2].endswith("[warn] slow poll")
    assert page.evaluate("window.__xss") is None
    assert page.locator("#console img").count() == 0
    # What Sentry's network tab shows: navigation.* and resource.* spans (not memory).
    assert len(network) == 4
    assert "navigate https://shop.example/cart 300 ms" in network[0]
    assert "GET 200 img https://cdn.example/logo.png 40 ms" in network[1]
    assert "POST 500 fetch https://api.example/pay 120 ms" in network[2]
    assert page.locator("#network li.failed").count() == 1
    assert "xhr https://api.example/poll" in network[3]
    # A row seeks the player to its instant.
    page.locator("#network li").nth(3).click()
    at = page.evaluate("window.vaultViewer.player.getReplayer().getCurrentTime()")
    assert 39_000 <= at <= 41_000


# Script added to the page as markup from a recording would be: an inline script and an
# inline event handler. What ran, once the image's error has fired.
_INJECTED = """() => new Promise((resolve) => {
  window.__ran = [];
  const script = document.createElement('script');
  script.textContent = 'window.__ran.push("inline script")';
  document.body.append(script);
  const image = document.createElement('img');
  image.setAttribute('onerror', 'window.__ran.push("event handler")');
  image.addEventListener('error', () => resolve(window.__ran));
  image.src = 'data:,';
  document.body.append(image);
})"""


def test_the_page_runs_no_script_but_the_players_and_its_own(site: Site, page: Page) -> None:
    """The page's Content-Security-Policy: the player plays under it, and script that reached
    the page any other way does not run."""
    told: list[str] = []
    page.on("console", lambda message: told.append(message.text))
    assert _open(page, site, REPLAY, site.token) == "ready"
    assert page.evaluate("window.vaultViewer.events.length") == len(_played(site.events))
    assert not [text for text in told if "Content Security Policy" in text], told
    assert page.evaluate(_INJECTED) == []
    refused = [text for text in told if "Content Security Policy" in text]
    assert len(refused) == 2, told  # the browser says why, once for each


def test_the_token_goes_in_a_header_never_in_a_url(site: Site, page: Page) -> None:
    seen: list[tuple[str, str | None]] = []
    page.on(
        "request", lambda request: seen.append((request.url, request.headers.get("authorization")))
    )
    assert _open(page, site, REPLAY, site.token) == "ready"
    api = [(url, auth) for url, auth in seen if "/v1/" in url]
    assert api and all(auth == f"Bearer {site.token}" for _url, auth in api)
    assert all(site.token not in url for url, _auth in seen)
    assert site.token not in page.url
    assert page.evaluate("sessionStorage.length") == 0  # not kept unless asked
    page.reload()
    assert page.input_value("#token") == ""
    assert page.input_value("#replay") == REPLAY  # the fragment keeps what may be shared


def test_a_shredded_replay_shows_the_deleted_state(site: Site, page: Page) -> None:
    assert _open(page, site, GONE, site.token) == "deleted"
    status = page.locator("#status")
    assert status.get_attribute("data-state") == "deleted"
    assert "This replay was deleted." in status.inner_text()
    assert page.locator("#player *").count() == 0
    assert page.evaluate("window.vaultViewer.events.length") == 0


def test_a_refused_token_and_an_unknown_replay_say_so(site: Site, page: Page) -> None:
    assert _open(page, site, REPLAY, "vst_0123456789ab_forged") == "unauthorized"
    assert _open(page, site, "e" * 32, site.token) == "not-found"


_CROSS_ORIGIN_READ = """async ([url, token]) => {
  try {
    const reply = await fetch(url, {headers: {Authorization: 'Bearer ' + token}});
    const body = await reply.json();
    return {ok: true, status: reply.status, segments: body.length,
            next: reply.headers.get('X-Next-Cursor')};
  } catch (error) {
    return {ok: false, error: String(error)};
  }
}"""


def test_another_origin_reads_only_when_allowed(site: Site, page: Page) -> None:
    url = f"{site.base}/v1/projects/{PROJECT}/replays/{REPLAY}/recording?per_page=2"
    page.goto(site.allowed)
    allowed = page.evaluate(_CROSS_ORIGIN_READ, [url, site.token])
    assert allowed == {"ok": True, "status": 200, "segments": 2, "next": "2"}
    page.goto(site.denied)
    denied = page.evaluate(_CROSS_ORIGIN_READ, [url, site.token])
    assert denied["ok"] is False and "Failed to fetch" in denied["error"]


def test_the_viewer_on_another_origin_plays_only_when_that_origin_is_allowed(
    site: Site, page: Page
) -> None:
    """The viewer hosted elsewhere, its API field naming the vault server: CORS decides."""

    def play_from(origin: str) -> str:
        page.goto(f"{origin}/viewer")
        page.fill("#api", site.base)
        page.fill("#project", str(PROJECT))
        page.fill("#replay", LONG)
        page.fill("#token", site.token)
        page.click("#go")
        return viewer_settled(page)

    assert play_from(site.allowed) == "ready"
    # Three pages each for the recording, console and network: the page read X-Next-Cursor
    # across origins (the API exposes it to allowed origins).
    assert page.evaluate("window.vaultViewer.requests") == 9
    assert page.evaluate("window.vaultViewer.events.length") == len(_played(site.events))
    assert page.locator("#console li").count() == 3
    assert play_from(site.denied) == "error"
    assert "Failed to fetch" in page.locator("#status").inner_text()


# -- the page and its settings, without a browser ----------------------------------------------


def _no_vault() -> Vault:
    raise AssertionError("the viewer page needs no vault")


def _sri(path: Path) -> str:
    return "sha384-" + b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()


def _directives(policy: str) -> dict[str, list[str]]:
    named = (directive.split() for directive in policy.split(";") if directive.strip())
    return {name: sources for name, *sources in named}


def _inline_script_hashes(page: str) -> list[str]:
    """The sha256 source of each script the page holds inline (one, the viewer's own)."""
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.DOTALL)
    assert len(scripts) == 1 and "window.vaultViewer" in scripts[0]
    return [f"'sha256-{b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts]


def test_the_pinned_player_is_the_npm_one() -> None:
    """The version in viewer/package.json (and its lock) is the page's, and the integrity
    hashes the page sends are those of the files npm installed."""
    package = player_package()
    manifest = json.loads((VIEWER_DIR / "package.json").read_text())
    lock = json.loads((VIEWER_DIR / "package-lock.json").read_text())
    assert manifest["dependencies"]["rrweb-player"] == RRWEB_PLAYER_VERSION
    assert lock["packages"]["node_modules/rrweb-player"]["version"] == RRWEB_PLAYER_VERSION
    assert json.loads((package / "package.json").read_text())["version"] == RRWEB_PLAYER_VERSION
    for file, integrity in INTEGRITY.items():
        assert _sri(package / file) == integrity, file


def test_by_default_the_page_loads_the_pinned_player_from_the_cdn() -> None:
    app = create_app(_no_vault, policy=ApiPolicy(), metrics_token="")
    with TestClient(app) as client:
        page = client.get("/viewer")
        assert page.status_code == 200
        assert f'src="{CDN_BASE}/umd/rrweb-player.js"' in page.text
        assert f'href="{CDN_BASE}/dist/style.css"' in page.text
        assert f"/npm/rrweb-player@{RRWEB_PLAYER_VERSION}/umd/rrweb-player.js" in page.text
        for integrity in INTEGRITY.values():
            assert f'integrity="{integrity}"' in page.text
        assert "{{" not in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        policy = _directives(page.headers["content-security-policy"])
        assert policy["script-src"] == [f"{CDN_BASE}/", *_inline_script_hashes(page.text)]
        assert policy["default-src"] == policy["object-src"] == ["'none'"]
        assert policy["frame-ancestors"] == policy["base-uri"] == ["'none'"]
        assert client.get("/viewer/assets/umd/rrweb-player.js").status_code == 404
        assert "/viewer" not in client.get("/openapi.json").text


def test_local_assets_serve_only_the_players_files(tmp_path: Path) -> None:
    package = player_package()
    app = create_app(_no_vault, policy=ApiPolicy(viewer_assets=package), metrics_token="")
    with TestClient(app) as client:
        page = client.get("/viewer").text
        assert 'src="viewer/assets/umd/rrweb-player.js"' in page and CDN_BASE not in page
        policy = _directives(client.get("/viewer").headers["content-security-policy"])
        assert policy["script-src"] == ["'self'", *_inline_script_hashes(page)]
        script = client.get("/viewer/assets/umd/rrweb-player.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith(
            "text/javascript"
        )
        assert script.content == (package / "umd" / "rrweb-player.js").read_bytes()
        for other in ("package.json", "../rrweb/package.json", "umd/../package.json", "dist"):
            assert client.get(f"/viewer/assets/{other}").status_code == 404, other
    (tmp_path / "umd").mkdir()
    with pytest.raises(ConfigError, match="VAULT_STORE_VIEWER_ASSETS"):
        Settings.from_env(
            {"VAULT_STORE_HOME": str(tmp_path), "VAULT_STORE_VIEWER_ASSETS": str(tmp_path)}
        )
    found = Settings.from_env(
        {"VAULT_STORE_HOME": str(tmp_path), "VAULT_STORE_VIEWER_ASSETS": str(package)}
    )
    assert found.api.viewer_assets == package
