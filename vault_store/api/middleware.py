"""ASGI middleware of the API: request counts and latency, and a bound on time to first byte."""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from vault_store.api.deps import ApiLimits
from vault_store.api.errors import ApiError, error_response
from vault_store.api.metrics import Metrics


class Observe:
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
            await error_response(
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
