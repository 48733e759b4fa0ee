"""Operations routes: liveness with catalog reachability, and Prometheus metrics."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import PlainTextResponse, Response

from vault_store.api.deps import Context
from vault_store.api.errors import ApiError

router = APIRouter()


@router.get("/healthz", summary="Liveness and catalog reachability")
def healthz(context: Context) -> dict[str, str]:
    context.vault().stats()
    return {"status": "ok"}


@router.get(
    "/metrics",
    summary="Prometheus metrics (a bearer token if VAULT_STORE_METRICS_TOKEN is set)",
    response_class=PlainTextResponse,
)
def prometheus(context: Context, authorization: Annotated[str | None, Header()] = None) -> Response:
    expected = context.metrics_token
    if expected is not None:
        given = (authorization or "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, expected.encode()):
            raise ApiError(401, "unauthorized", "/metrics needs the metrics token")
    body, content_type = context.metrics.render()
    return Response(body, media_type=content_type)
