"""The replay viewer: one page that plays a replay with rrweb-player through this API.

The page holds no secret and no data: the person viewing types a token into it, the page keeps
it in memory (or, if asked, in the tab's sessionStorage) and sends it as an ``Authorization``
header, never in a URL. The player is the npm package ``rrweb-player`` at a pinned version,
loaded, as FastAPI's docs page loads Swagger UI, from a CDN by default, or from a local npm
install when ``VAULT_STORE_VIEWER_ASSETS`` names one (the tests do). Either way the browser
checks the files against the pinned version's hashes (subresource integrity), so a CDN serving
other bytes is refused, and the page's Content-Security-Policy runs no other script. The page's
routes are not part of the OpenAPI schema.
"""

from __future__ import annotations

import html
import re
from base64 import b64encode
from functools import cache
from hashlib import sha256
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

from vault_store.api.deps import Context
from vault_store.api.errors import ApiError
from vault_store.settings import VIEWER_ASSET_FILES

RRWEB_PLAYER_VERSION = "2.1.6"
CDN_BASE = f"https://cdn.jsdelivr.net/npm/rrweb-player@{RRWEB_PLAYER_VERSION}"
# sha384 of each file of rrweb-player 2.1.6 as npm publishes it (a test checks them against the
# npm-installed copy); the page's <script> and <link> carry them as integrity attributes.
INTEGRITY = {
    "umd/rrweb-player.js": (
        "sha384-dEyJ7t1zoeMIj8BP+Jm8BYZpMRxaeKT5uJyQM/umjXn/pRQwtFXr6lBpIdlMWATN"
    ),
    "dist/style.css": "sha384-Marghr6l1+VGtnJeFlCqAczo2QATZNBKtEmCYOLvBgwGdwYCMqwzyhsd9clzw0UD",
}
_MEDIA_TYPES = {"umd/rrweb-player.js": "text/javascript", "dist/style.css": "text/css"}
# The page is static: nothing in it depends on the caller, so it may be cached, but it is never
# framed by another site and never leaks its address in a Referer.
_PAGE_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@cache
def _template() -> str:
    return resources.files("vault_store.api").joinpath("viewer.html").read_text("utf-8")


@cache
def _page(base: str) -> tuple[str, dict[str, str]]:
    """The page loading the player from `base`, and its headers."""
    page = _template()
    for file, placeholder in (
        ("umd/rrweb-player.js", "PLAYER_JS"),
        ("dist/style.css", "PLAYER_CSS"),
    ):
        page = page.replace(f"{{{{{placeholder}}}}}", html.escape(f"{base}/{file}"))
        page = page.replace(f"{{{{{placeholder}_INTEGRITY}}}}", html.escape(INTEGRITY[file]))
    page = page.replace("{{RRWEB_PLAYER_VERSION}}", RRWEB_PLAYER_VERSION)
    player = f"{base}/" if base == CDN_BASE else "'self'"
    return page, {**_PAGE_HEADERS, "Content-Security-Policy": content_security_policy(page, player)}


def content_security_policy(page: str, player: str) -> str:
    """The page's policy: script only from `player` (the pinned player's source) and the page's
    own inline scripts, each by its hash.

    A token is typed into this page and it shows recorded text (the console and network
    lists): should markup from a recording ever reach it, it could not run script. Replays
    keep their look: rrweb writes the recorded page's styles inline into its frame, which
    inherits this policy, and recorded images, fonts and media load from wherever the site had
    them. The API field may name another server, so fetches may go anywhere (its CORS decides).
    """
    inline = re.findall(r"<script>(.*?)</script>", page, flags=re.DOTALL)
    hashes = [f"'sha256-{b64encode(sha256(s.encode()).digest()).decode()}'" for s in inline]
    directives = {
        "default-src": ["'none'"],
        "script-src": [player, *hashes],
        "style-src": ["*", "'unsafe-inline'", "data:", "blob:"],
        "img-src": ["*", "data:", "blob:"],
        "font-src": ["*", "data:"],
        "media-src": ["*", "data:", "blob:"],
        "connect-src": ["*"],
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'none'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


@router.get("/viewer", response_class=HTMLResponse)
def viewer_page(context: Context) -> Response:
    """The viewer page, loading the player from the CDN or from /viewer/assets/."""
    page, headers = _page(CDN_BASE if context.policy.viewer_assets is None else "viewer/assets")
    return HTMLResponse(page, headers=headers)


@router.get("/viewer/assets/{file:path}")
def viewer_asset(file: str, context: Context) -> Response:
    """One file of the local rrweb-player install (404 when the page uses the CDN)."""
    folder = context.policy.viewer_assets
    if folder is None or file not in VIEWER_ASSET_FILES:
        raise ApiError(404, "not_found", "no such viewer asset")
    return FileResponse(
        folder / file,
        media_type=_MEDIA_TYPES[file],
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
    )
