"""Headless Chromium (Debian's, driven by Playwright) and the npm-installed player, for the
browser tests: found or installed here, a failure under CI=true when missing."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import BrowserContext, Page, Route, sync_playwright

from tests.conftest import need

REPO = Path(__file__).resolve().parents[2]
VIEWER_DIR = REPO / "viewer"
CHROMIUM = os.environ.get("VAULT_STORE_TEST_CHROMIUM", "/usr/bin/chromium")
# Debian's chromium in a container: no sandbox, no GPU, and nothing that calls home.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # Names other than the loopback resolve to nothing: a replayed page's images and styles
    # point at the recorded site, and no test may send traffic off this machine.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


def node_modules() -> Path:
    """viewer/node_modules (rrweb-player, and Sentry's browser SDK for the tests), installed by
    `npm ci` from viewer/package-lock.json when missing."""
    modules = VIEWER_DIR / "node_modules"
    wanted = [modules / "rrweb-player" / "umd" / "rrweb-player.js", modules / "@sentry" / "browser"]
    if all(path.exists() for path in wanted):
        return modules
    # pytest-xdist processes may get here at once: one runs `npm ci`, which rewrites the folder,
    # and the others wait for it and find the packages there.
    with (Path(tempfile.gettempdir()) / "vault-store-viewer-npm-ci.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not all(path.exists() for path in wanted):
            _npm_ci()
    return modules


def _npm_ci() -> None:
    """`npm ci` in viewer/, from its package-lock.json."""
    npm = shutil.which("npm")
    need(npm is not None, "npm not found (needed to install viewer/package-lock.json)")
    assert npm is not None
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=VIEWER_DIR,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]


def player_package() -> Path:
    """node_modules/rrweb-player of viewer/."""
    return node_modules() / "rrweb-player"


@contextmanager
def chromium() -> Iterator[BrowserContext]:
    """A Playwright browser context on a fresh profile, whose requests may only go to the
    loopback (anything else is aborted before it leaves)."""
    need(Path(CHROMIUM).is_file(), f"chromium not found at {CHROMIUM} (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="vault-chromium-")
    try:
        with sync_playwright() as driver:
            context = driver.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1400, "height": 900},
            )
            context.route("**/*", _loopback_only)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _loopback_only(route: Route) -> None:
    url = urlsplit(route.request.url)
    if url.scheme in ("data", "blob", "about") or url.hostname in LOOPBACK:
        route.continue_()
    else:
        route.abort("blockedbyclient")


# What the viewer's state is while it is still working on a replay.
_UNSETTLED = ("idle", "loading")


def viewer_settled(page: Page, *, timeout: float = 30.0) -> str:
    """The viewer page's state once it has finished loading (ready, deleted, error...).

    Polled from here: Playwright's `wait_for_function` evaluates its predicate with `eval`
    inside the page, which the viewer's Content-Security-Policy refuses, as it should."""
    deadline = time.monotonic() + timeout
    while True:
        state = str(page.evaluate("window.vaultViewer ? window.vaultViewer.state : 'idle'"))
        if state not in _UNSETTLED:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"the viewer is still {state!r} after {timeout:.0f} s")
        time.sleep(0.05)
