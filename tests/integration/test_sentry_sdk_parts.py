"""Typed parts on real Sentry SDK recordings: Sentry's browser SDK (npm, pinned in
viewer/package-lock.json) records a page in headless Chromium and sends its replay envelopes to
a local endpoint; their recording items become relay messages, are stored with typed parts, and
each part read must hold exactly what Sentry's frontend puts in the matching tab.

The tabs' rules are written here as Sentry's frontend states them (replayReader.tsx:
getConsoleFrames keeps breadcrumb frames whose category is "console"; getNetworkFrames keeps
span frames whose op starts with "navigation." or "resource."; hydrateFrames sorts events into
breadcrumb and span frames by data.tag alone), independently of vault_store.core.parts.
"""

from __future__ import annotations

import http.server
import json
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
from playwright.sync_api import BrowserContext

from tests.conftest import VaultFactory
from tests.integration.browser import chromium, node_modules, viewer_settled
from tests.integration.helpers import serving
from vault_store.api import create_app
from vault_store.core.parts import CONSOLE, DOM, NETWORK, TIMELINE
from vault_store.settings import ApiPolicy
from vault_store.vault import Vault

PROJECT = 5
# A 1x1 PNG, so the page loads an image (a resource.img span).
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


@dataclass
class Endpoint:
    """What the page's Sentry SDK sent: every envelope body, in order."""

    envelopes: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _import_map(modules: Path) -> dict[str, dict[str, str]]:
    """The bare specifiers Sentry's ESM builds import, resolved through each package.json's
    exports (import or default condition), as a browser import map."""
    imports: dict[str, str] = {}
    packages = sorted((modules / "@sentry").iterdir())
    for package in list(packages):
        # Their own dependencies outside @sentry (web-vitals).
        manifest = json.loads((package / "package.json").read_text())
        for name in manifest.get("dependencies", {}):
            if not name.startswith("@sentry/") and (modules / name).is_dir():
                packages.append(modules / name)
    for package in packages:
        manifest = json.loads((package / "package.json").read_text())
        name = manifest["name"]
        exports = manifest.get("exports") or {".": manifest.get("module") or manifest["main"]}
        for subpath, target in exports.items():
            if not subpath.startswith(".") or "*" in subpath or subpath == "./package.json":
                continue
            while isinstance(target, dict):
                target = target.get("import") or target.get("browser") or target.get("default")
            if not isinstance(target, str) or not target.endswith((".js", ".mjs")):
                continue
            specifier = name if subpath == "." else f"{name}/{subpath[2:]}"
            relative = (package / target).resolve().relative_to(modules.resolve())
            imports[specifier] = f"/nm/{relative.as_posix()}"
    # @sentry/browser names its ESM build in "module" (its exports point at CommonJS first).
    browser = json.loads((modules / "@sentry" / "browser" / "package.json").read_text())
    imports["@sentry/browser"] = f"/nm/@sentry/browser/{browser['module']}"
    return {"imports": imports}


_PAGE = """<!doctype html><html><head><title>shop</title>
<script type="importmap">{import_map}</script></head>
<body><h1>Cart</h1><p id="total">3 items</p><button id="pay">Pay</button>
<script type="module">
import * as Sentry from "@sentry/browser";
Sentry.init({{
  dsn: location.protocol + "//public@" + location.host + "/1",
  integrations: [
    Sentry.browserTracingIntegration(),
    Sentry.replayIntegration({{maskAllText: false, blockAllMedia: false, minReplayDuration: 0,
      networkDetailAllowUrls: [location.origin]}}),
  ],
  tracesSampleRate: 1.0,
  replaysSessionSampleRate: 1.0,
  replaysOnErrorSampleRate: 1.0,
}});
window.Sentry = Sentry;
window.sdkReady = true;
</script></body></html>"""


def _handler(
    modules: Path, endpoint: Endpoint, page: bytes
) -> type[http.server.BaseHTTPRequestHandler]:
    root = modules.resolve()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/":
                self._send(200, "text/html", page)
            elif path == "/pixel.png":
                self._send(200, "image/png", PIXEL)
            elif path.startswith("/api/cart"):
                self._send(200, "application/json", b'{"items": 3}')
            elif path.startswith("/nm/"):
                file = (root / path[4:]).resolve()
                if root in file.parents and file.is_file():
                    self._send(200, "text/javascript", file.read_bytes())
                else:
                    self._send(404, "text/plain", b"no")
            else:
                self._send(404, "text/plain", b"no")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if "/envelope/" in self.path:
                with endpoint.lock:
                    endpoint.envelopes.append(body)
            self._send(200, "application/json", b"{}")

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def _recording_items(envelopes: list[bytes]) -> list[tuple[str, bytes]]:
    """(replay id, payload) of every replay_recording item: the payload is what the relay puts
    in its message, a `{"segment_id":N}` line and the (maybe zlib) body."""
    found = []
    for envelope in envelopes:
        header, _, rest = envelope.partition(b"\n")
        replay_id = orjson.loads(header).get("event_id")
        while rest:
            line, _, rest = rest.partition(b"\n")
            if not line.strip():
                continue
            item = orjson.loads(line)
            length = item.get("length")
            if length is None:
                payload, _, rest = rest.partition(b"\n")
            else:
                payload, rest = rest[:length], rest[length:].lstrip(b"\n")
            if item.get("type") == "replay_recording":
                found.append((str(replay_id), payload))
    return found


def _events(payload: bytes) -> list[Any]:
    _header, _, body = payload.partition(b"\n")
    if not body.lstrip().startswith(b"["):
        body = zlib.decompress(body)
    events: list[Any] = orjson.loads(body)
    return events


def _message(replay_id: str, payload: bytes) -> bytes:
    packed: bytes = msgpack.packb(
        {
            "type": "replay_recording_not_chunked",
            "replay_id": replay_id,
            "org_id": 1,
            "project_id": PROJECT,
            "key_id": None,
            "received": 0,
            "retention_days": 30,
            "payload": payload,
            "version": 1,
        }
    )
    return packed


# Sentry's tabs, as its frontend selects them.
def _console_tab(event: Any) -> bool:
    data = event.get("data") if isinstance(event, dict) else None
    if not isinstance(data, dict) or data.get("tag") != "breadcrumb":
        return False
    return isinstance(data.get("payload"), dict) and data["payload"].get("category") == "console"


def _network_tab(event: Any) -> bool:
    data = event.get("data") if isinstance(event, dict) else None
    if not isinstance(data, dict) or data.get("tag") != "performanceSpan":
        return False
    op = data["payload"].get("op") if isinstance(data.get("payload"), dict) else None
    return isinstance(op, str) and op.startswith(("navigation.", "resource."))


@dataclass
class Recorded:
    """A real replay recorded by Sentry's browser SDK (two segments or more), and the browser
    that recorded it (for the viewer test)."""

    items: list[tuple[str, bytes]]
    browser: BrowserContext


@pytest.fixture(scope="module")
def recorded() -> Iterator[Recorded]:
    """Sentry's browser SDK records a page in headless Chromium."""
    modules = node_modules()
    endpoint = Endpoint()
    page = _PAGE.format(import_map=json.dumps(_import_map(modules))).encode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(modules, endpoint, page))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with chromium() as context:
            yield Recorded(_record(context, origin, endpoint), context)
    finally:
        server.shutdown()
        server.server_close()


def _record(context: BrowserContext, origin: str, endpoint: Endpoint) -> list[tuple[str, bytes]]:
    tab = context.new_page()
    tab.goto(origin + "/")
    tab.wait_for_function("window.sdkReady === true", timeout=30_000)
    # What a person does on the page: logs, requests, an image, a click, a route change.
    tab.evaluate(
        """async () => {
          console.log('cart loaded', 3);
          console.warn('slow total');
          await fetch('/api/cart?via=fetch', {method: 'POST', body: '{"sku": 1}'});
          await new Promise((done) => {
            const xhr = new XMLHttpRequest();
            xhr.open('GET', '/api/cart?via=xhr');
            xhr.onloadend = done;
            xhr.send();
          });
          const img = new Image();
          await new Promise((done) => { img.onload = img.onerror = done; img.src = '/pixel.png'; });
          document.body.append(img);
          document.getElementById('total').textContent = '4 items';
          document.getElementById('pay').click();
          history.pushState({}, '', '/checkout');
          await window.Sentry.getReplay().flush();
        }"""
    )
    tab.evaluate(
        """async () => {
          console.error('payment failed', {code: 402});
          await fetch('/api/cart?via=fetch-2');
          document.getElementById('total').textContent = '0 items';
          await new Promise((done) => setTimeout(done, 300));
          await window.Sentry.getReplay().flush();
        }"""
    )
    tab.wait_for_timeout(500)
    tab.close()
    with endpoint.lock:
        items = _recording_items(endpoint.envelopes)
    assert len(items) >= 2, f"the SDK sent {len(items)} recording segments"
    return items


@pytest.fixture
def typed(make_vault: VaultFactory) -> Vault:
    return make_vault(typed_parts=True)


def _store(vault: Vault, recorded: Recorded) -> tuple[str, list[list[Any]]]:
    """The recording ingested as relay messages: its replay id and its segments' events."""
    (replay_id,) = {replay for replay, _payload in recorded.items}
    for _replay, payload in recorded.items:
        vault.ingest_message(_message(replay_id, payload))
    vault.flush()
    return replay_id, [_events(payload) for _replay, payload in recorded.items]


def test_parts_hold_what_sentrys_tabs_show_on_a_real_sdk_recording(
    recorded: Recorded, typed: Vault
) -> None:
    replay_id, segments = _store(typed, recorded)

    def read(*parts: str) -> list[list[Any]]:
        only = frozenset(parts) if parts else None
        body = b"".join(typed.read_recording(PROJECT, replay_id, only=only))
        found: list[list[Any]] = orjson.loads(body)
        return found

    assert read() == segments  # every part together: the recording as sent
    console = read(CONSOLE)
    network = read(NETWORK)
    assert console == [[e for e in s if _console_tab(e)] for s in segments]
    # The network part is the tab's spans plus the SDK's options frame (the tab reads its
    # networkDetailHasUrls); nothing else.
    assert [[e for e in s if e["data"].get("tag") != "options"] for s in network] == [
        [e for e in s if _network_tab(e)] for s in segments
    ]
    # Not vacuous: what the page did is there, where Sentry shows it.
    messages = [e["data"]["payload"].get("message", "") for s in console for e in s]
    assert any("cart loaded" in m for m in messages)
    assert any("slow total" in m for m in messages)
    assert any("payment failed" in m for m in messages)
    ops = {e["data"]["payload"]["op"] for s in network for e in s if _network_tab(e)}
    assert {"navigation.navigate", "navigation.push", "resource.fetch", "resource.xhr"} <= ops
    assert any(
        op.startswith("resource.") and op not in ("resource.fetch", "resource.xhr") for op in ops
    )
    # The rest: the player's events in dom, clicks and other spans in the timeline.
    others = read(DOM, TIMELINE)
    assert sum(map(len, others)) + sum(map(len, console)) + sum(map(len, network)) == sum(
        map(len, segments)
    )
    timeline = [e for s in read(TIMELINE) for e in s]
    assert any(e.get("data", {}).get("payload", {}).get("category") == "ui.click" for e in timeline)


def test_the_viewer_lists_what_the_sdk_recorded(recorded: Recorded, typed: Vault) -> None:
    """The viewer's console and network lists, read through the API from the SDK's own
    breadcrumbs and spans: every console call and every request the page made is listed."""
    replay_id, segments = _store(typed, recorded)
    token = typed.issue_token([PROJECT], ["read"]).token
    policy = ApiPolicy(viewer_assets=node_modules() / "rrweb-player")
    with serving(create_app(lambda: typed, policy=policy, metrics_token="")) as base:
        page = recorded.browser.new_page()
        try:
            page.goto(f"{base}/viewer")
            page.fill("#project", str(PROJECT))
            page.fill("#replay", replay_id)
            page.fill("#token", token)
            page.click("#go")
            assert viewer_settled(page) == "ready"
            console = page.locator("#console li").all_inner_texts()
            network = page.locator("#network li").all_inner_texts()
            played = page.evaluate("window.vaultViewer.events.length")
            total = page.evaluate("window.vaultViewer.player.getReplayer().getMetaData().totalTime")
        finally:
            page.close()
    # The player gets rrweb's events only (Sentry's frames carry seconds, not milliseconds), so
    # the replay lasts the few seconds the page was recorded, and every row is within them.
    frames = ("breadcrumb", "performanceSpan", "options")
    assert played == sum(1 for s in segments for e in s if e["data"].get("tag") not in frames)
    assert 0 < total < 60_000
    assert all(row.startswith("00:") for row in console + network)
    expected_console = sum(1 for s in segments for e in s if _console_tab(e))
    expected_network = sum(1 for s in segments for e in s if _network_tab(e))
    assert len(console) == expected_console == 3
    assert any("[log] cart loaded 3" in row for row in console)
    assert any("slow total" in row for row in console)
    assert any("[error] payment failed" in row for row in console)
    assert len(network) == expected_network
    assert any(
        row.startswith("00:") and "POST 200 fetch" in row and "via=fetch" in row for row in network
    )
    assert any("xhr" in row and "via=xhr" in row for row in network)
    assert any("img" in row and "pixel.png" in row for row in network)
    assert any("push" in row and "/checkout" in row for row in network)
