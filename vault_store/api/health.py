"""Operations routes: liveness with catalog reachability, and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response

from vault_store.api.deps import Context

router = APIRouter()


@router.get("/healthz", summary="Liveness and catalog reachability")
def healthz(context: Context) -> dict[str, str]:
    context.vault().stats()
    return {"status": "ok"}


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
def prometheus(context: Context) -> Response:
    body, content_type = context.metrics.render()
    return Response(body, media_type=content_type)
