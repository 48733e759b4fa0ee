"""The decrypting read API (FastAPI): tenant-scoped reads, streamed recordings, deletes.

Stateless: every replica builds its own Vault from the environment on first use, so any number
can run behind a load balancer. Errors are JSON ``{"error", "message"}``; a replay of a project
the token does not cover answers 404 exactly like one that never existed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from vault_store.api.metrics import Metrics
from vault_store.catalog import RangeRecord, ReplayState
from vault_store.core.message import MAX_STORED_ID
from vault_store.core.parts import RECORDING, TYPED_PARTS, parse_filter
from vault_store.errors import (
    BackendError,
    BackendUnavailable,
    CorruptData,
    InvalidInput,
    ReplayNotFound,
    ReplayShredded,
    VaultError,
)
from vault_store.services.shredder import Scope
from vault_store.services.tokens import Principal, TokenStore
from vault_store.settings import Settings
from vault_store.vault import Vault

REPLAY_ID_PATTERN = r"^[0-9a-f]{32}$"
MAX_PER_PAGE = 100
# Project and segment ids are signed 64-bit in the catalog (see message.MAX_STORED_ID).
MAX_ID = MAX_STORED_ID

ProjectId = Annotated[int, Path(ge=0, le=MAX_ID, description="Project id.")]
ReplayId = Annotated[
    str, Path(pattern=REPLAY_ID_PATTERN, description="32 lowercase hex characters.")
]
Cursor = Annotated[
    int | None, Query(ge=0, le=MAX_ID, description="Start at this segment id (from a reply).")
]
PerPage = Annotated[int, Query(ge=1, le=MAX_PER_PAGE, description="Segments per page.")]
PartFilter = Annotated[
    str | None,
    Query(
        pattern=rf"^({'|'.join(TYPED_PARTS)})(,({'|'.join(TYPED_PARTS)}))*$",
        description="Only these parts, comma-separated (dom, console, network, timeline).",
    ),
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiLimits:
    """Bounds of one request: sealed bytes per response, seconds to first byte."""

    max_response_bytes: int = 64 * 1024 * 1024
    request_timeout_seconds: float = 30.0
    retry_after_seconds: int = 5


class ApiError(Exception):
    """An error answer with a status, a short code and a message."""

    def __init__(self, status: int, error: str, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers


def create_app(
    vault_factory: Callable[[], Vault] | None = None, *, limits: ApiLimits | None = None
) -> FastAPI:
    """The API over a Vault (built from the environment on first use unless given)."""
    limits = limits or ApiLimits()
    state = _State(vault_factory or (lambda: Vault.from_settings(Settings.from_env())))
    metrics = Metrics(state.counters)
    app = FastAPI(
        title="vault-store",
        version="1",
        description="Decrypting read API of vault-store: replays, recordings, deletions.",
    )
    app.state.vault_state = state
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    _install_error_handlers(app, limits)

    app.add_middleware(_Observe, metrics=metrics, limits=limits)

    @app.get("/healthz", summary="Liveness and catalog reachability")
    def healthz() -> dict[str, str]:
        state.vault().stats()
        return {"status": "ok"}

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get(
        "/v1/projects/{project_id}/replays/{replay_id}/segments",
        summary="Segment metadata of a replay, one page at a time",
    )
    def list_segments(
        project_id: ProjectId,
        replay_id: ReplayId,
        caller: Caller,
        cursor: Cursor = None,
        per_page: PerPage = 50,
    ) -> dict[str, Any]:
        vault = _readable(state, caller, project_id, replay_id)
        rows, next_cursor = _page(vault, project_id, replay_id, cursor or 0, per_page, limits)
        segments: dict[int, dict[str, Any]] = {}
        for row in rows:
            entry = segments.setdefault(
                row.segment_id, {"id": row.segment_id, "stored_bytes": 0, "parts": []}
            )
            entry["stored_bytes"] += row.size
            entry["parts"].append(row.part)
        return {"segments": list(segments.values()), "next_cursor": next_cursor}

    @app.get(
        "/v1/projects/{project_id}/replays/{replay_id}/recording",
        summary="The merged recording (JSON array, one element per segment), streamed",
        response_class=StreamingResponse,
    )
    def recording(
        project_id: ProjectId,
        replay_id: ReplayId,
        caller: Caller,
        cursor: Cursor = None,
        per_page: PerPage = MAX_PER_PAGE,
        part: PartFilter = None,
    ) -> Response:
        vault = _may_read(state, caller, project_id)
        only = parse_filter(part)
        start = cursor or 0
        rows, next_cursor = _page(vault, project_id, replay_id, start, per_page, limits, only=only)
        stop = rows[-1].segment_id + 1 if rows else start
        chunks = vault.read_recording(project_id, replay_id, start=start, stop=stop, only=only)
        first = _first_chunk(chunks)
        headers = {"X-Next-Cursor": str(next_cursor)} if next_cursor is not None else {}
        return StreamingResponse(
            _counted(first, chunks, metrics), media_type="application/json", headers=headers
        )

    @app.get(
        "/v1/projects/{project_id}/replays/{replay_id}/segments/{segment_id}",
        summary="One segment's events",
    )
    def segment(
        project_id: ProjectId,
        replay_id: ReplayId,
        segment_id: Annotated[int, Path(ge=0, le=MAX_ID)],
        caller: Caller,
        part: PartFilter = None,
    ) -> Response:
        vault = _may_read(state, caller, project_id)
        pages = vault.reader.merged(
            project_id, replay_id, start=segment_id, stop=segment_id + 1, only=parse_filter(part)
        )
        found = [body for page in pages for _segment, body in page]
        if not found:
            raise ApiError(404, "not_found", f"replay has no segment {segment_id}")
        body = found[0]
        metrics.bytes_sent(len(body))
        return Response(body, media_type="application/json")

    @app.delete(
        "/v1/projects/{project_id}/replays/{replay_id}",
        summary="Delete a replay (crypto-shred); 202 with the deletion id",
        status_code=202,
    )
    def delete_replay(
        project_id: ProjectId,
        replay_id: ReplayId,
        caller: Caller,
        background: BackgroundTasks,
        overwrite: Annotated[bool, Query(description="Also zero the ciphertext.")] = False,
    ) -> dict[str, Any]:
        if not caller.knows(project_id):
            raise ApiError(404, "not_found", "no such replay")
        if not caller.may("delete", project_id):
            raise ApiError(403, "forbidden", "this token may not delete")
        vault = state.vault()
        status = vault.shred(
            Scope.REPLAY,
            project_id,
            replay_id=replay_id,
            overwrite=overwrite,
            requested_by=f"token:{caller.token_id}"
            + (f" ({caller.label})" if caller.label else ""),
            reason="API request",
            run=False,
        )
        # Recorded now (reads stop at once); the rows go after the answer. If this process
        # dies first, `vault-store deletion resume` finishes it.
        background.add_task(vault.resume_deletion, status.id)
        return {"deletion_id": status.id, "status": status.status}

    @app.get("/v1/deletions/{deletion_id}", summary="A deletion's status and counts")
    def deletion(
        deletion_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")], caller: Caller
    ) -> dict[str, Any]:
        try:
            status = state.vault().shredder.status(deletion_id)
        except InvalidInput:
            raise ApiError(404, "not_found", "no such deletion") from None
        if not caller.knows(status.project_id):
            raise ApiError(404, "not_found", "no such deletion")
        if not (caller.may("delete", status.project_id) or caller.may("audit", status.project_id)):
            raise ApiError(403, "forbidden", "this token may not see deletions")
        return status.as_dict()

    return app


def principal(request: Request) -> Principal:
    """The caller behind the bearer token (401 without a valid one)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>")
    state: _State = request.app.state.vault_state
    found = state.tokens().authenticate(token.strip())
    if found is None:
        raise ApiError(401, "unauthorized", "the token is not valid")
    return found


Caller = Annotated[Principal, Depends(principal)]


class _Observe:
    """Plain ASGI middleware: counts requests and latency, and bounds time to the first byte.

    If no response has started within the request timeout, the request is abandoned and a 503
    with Retry-After is sent instead; a response already streaming is left to finish.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, limits: ApiLimits) -> None:
        self._app = app
        self._metrics = metrics
        self._limits = limits

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        began = asyncio.Event()

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                began.set()
            await send(message)

        task = asyncio.ensure_future(self._app(scope, receive, observed_send))
        waiter = asyncio.ensure_future(began.wait())
        done, _ = await asyncio.wait(
            {task, waiter},
            timeout=self._limits.request_timeout_seconds,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if not done:
            task.cancel()
            status = 503
            await _error_response(
                ApiError(
                    503,
                    "timeout",
                    "the request took too long",
                    **{"Retry-After": str(self._limits.retry_after_seconds)},
                )
            )(scope, receive, send)
        else:
            try:
                await task
            finally:
                waiter.cancel()
        route = scope.get("route")
        self._metrics.observe(
            getattr(route, "path", "unmatched"),
            scope["method"],
            status,
            time.perf_counter() - started,
        )


class _State:
    """The process's Vault and token store, built once on first use (after any fork)."""

    def __init__(self, factory: Callable[[], Vault]) -> None:
        self._factory = factory
        self._vault: Vault | None = None
        self._tokens: TokenStore | None = None
        self._lock = threading.Lock()

    def vault(self) -> Vault:
        if self._vault is None:
            with self._lock:
                if self._vault is None:
                    self._vault = self._factory()
        return self._vault

    def tokens(self) -> TokenStore:
        if self._tokens is None:
            self._tokens = TokenStore(self.vault().catalog)
        return self._tokens

    def counters(self) -> dict[str, float]:
        """Reader and key-cache counters, for /metrics (zeros before the first request)."""
        if self._vault is None:
            return {}
        reads = self._vault.reader.counters
        keys = self._vault.read_keys
        return {
            "backend_gets": reads.gets,
            "backend_bytes": reads.bytes_fetched,
            "kms_unwraps": reads.unwraps,
            "key_cache_hits": keys.hits,
            "key_cache_misses": keys.misses,
        }


def _may_read(state: _State, caller: Principal, project_id: int) -> Vault:
    """The vault, once the caller may read this project (404 if not theirs, 403 if no read).

    Reads through the reader need nothing more: it answers 404 or 410 (mapped from
    ReplayNotFound / ReplayShredded) before the first byte is sent.
    """
    if not caller.knows(project_id):
        raise ApiError(404, "not_found", "no such replay")
    if not caller.may("read", project_id):
        raise ApiError(403, "forbidden", "this token may not read")
    return state.vault()


def _readable(state: _State, caller: Principal, project_id: int, replay_id: str) -> Vault:
    """_may_read, and the replay exists and is not shredded (for answers not from the reader)."""
    vault = _may_read(state, caller, project_id)
    replay_state = vault.catalog.replay_state(project_id, replay_id)
    if replay_state is ReplayState.SHREDDED:
        raise ApiError(410, "shredded", "this replay was deleted")
    if replay_state is ReplayState.UNKNOWN:
        raise ApiError(404, "not_found", "no such replay")
    return vault


def _page(
    vault: Vault,
    project_id: int,
    replay_id: str,
    start: int,
    per_page: int,
    limits: ApiLimits,
    *,
    only: frozenset[str] | None = None,
) -> tuple[list[RangeRecord], int | None]:
    """Rows of up to `per_page` whole segments from `start`, within the response size cap, and
    the cursor of the next page (None at the end).

    Every segment counts towards `per_page`, even one holding none of the `only` parts: the
    reader answers it as []. Only the wanted parts' bytes count towards the size cap, as only
    they are fetched.
    """
    rows = vault.catalog.replay_ranges(
        project_id, replay_id, min_segment=start, limit=per_page * 8 + 1
    )
    kept: list[RangeRecord] = []
    segments: list[int] = []
    size = 0
    for row in rows:
        new_segment = not segments or segments[-1] != row.segment_id
        if (
            new_segment
            and segments
            and (len(segments) == per_page or size + row.size > limits.max_response_bytes)
        ):
            return kept, row.segment_id
        if new_segment:
            segments.append(row.segment_id)
        kept.append(row)
        if only is None or row.part in only or row.part == RECORDING:
            size += row.size
    if len(rows) == per_page * 8 + 1 and kept:
        # The query limit cut the page short: continue after the last whole segment.
        last = kept[-1].segment_id
        kept = [row for row in kept if row.segment_id != last] or kept
        return kept, kept[-1].segment_id + 1
    return kept, None


def _first_chunk(chunks: Iterator[bytes]) -> bytes:
    """Produce the first chunk before answering, so errors become statuses, not broken bodies."""
    return next(chunks)


def _counted(first: bytes, rest: Iterator[bytes], metrics: Metrics) -> Iterator[bytes]:
    metrics.bytes_sent(len(first))
    yield first
    for chunk in rest:
        metrics.bytes_sent(len(chunk))
        yield chunk


def _install_error_handlers(app: FastAPI, limits: ApiLimits) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return _error_response(error)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        where = ".".join(str(part) for part in problems[0]["loc"]) if problems else "request"
        detail = problems[0]["msg"] if problems else "invalid request"
        return _error_response(ApiError(400, "bad_request", f"{where}: {detail}"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "error")
        return _error_response(ApiError(error.status_code, code, str(error.detail)))

    @app.exception_handler(VaultError)
    async def vault_error(_request: Request, error: VaultError) -> JSONResponse:
        return _error_response(_map(error, limits))


def _map(error: VaultError, limits: ApiLimits) -> ApiError:
    if isinstance(error, ReplayShredded):
        return ApiError(410, "shredded", "this replay was deleted")
    if isinstance(error, ReplayNotFound):
        return ApiError(404, "not_found", "no such replay")
    if isinstance(error, InvalidInput):
        return ApiError(400, "bad_request", str(error))
    if isinstance(error, BackendUnavailable):
        return ApiError(
            503,
            "unavailable",
            "a backend is unavailable; retry later",
            **{"Retry-After": str(limits.retry_after_seconds)},
        )
    if isinstance(error, CorruptData):
        return ApiError(502, "integrity", str(error))
    if isinstance(error, BackendError):
        return ApiError(502, "backend", "a backend refused the operation")
    return ApiError(502, "error", "the request could not be served")


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(
        {"error": error.error, "message": error.message},
        status_code=error.status,
        headers=error.headers,
    )
