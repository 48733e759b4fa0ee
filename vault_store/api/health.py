"""Operations routes: liveness naming the backend that is down, and Prometheus metrics."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from vault_store.api.deps import Context
from vault_store.api.errors import ApiError
from vault_store.errors import VaultError

router = APIRouter()
log = logging.getLogger("vault_store.api")

_DOWN: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "A backend is down: `down` names each one (catalog, blob_store, kms, or "
        "configuration when the vault cannot even be built); the server log says why."
    }
}


@router.get("/healthz", summary="Liveness and each backend's reachability", responses=_DOWN)
def healthz(context: Context) -> Any:
    try:
        found = context.vaults.health()
    except VaultError as error:
        # The reasons go to the log only: an unauthenticated probe learns which part is down,
        # not the paths or hosts behind it.
        log.error("healthz: the vault cannot be built: %s: %s", type(error).__name__, error)
        return JSONResponse({"status": "down", "down": ["configuration"]}, status_code=503)
    down = sorted(name for name, problem in found.items() if problem is not None)
    for name in down:
        log.error("healthz: %s is down: %s", name, found[name])
    if down:
        return JSONResponse({"status": "down", "down": down}, status_code=503)
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
