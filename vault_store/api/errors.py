"""Error answers of the API: every failure is JSON ``{"error", "message"}`` with its status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from vault_store.errors import (
    BackendError,
    BackendUnavailable,
    CorruptData,
    InvalidInput,
    ReplayNotFound,
    ReplayShredded,
    VaultError,
)

log = logging.getLogger("vault_store.api")


class ApiError(Exception):
    """An error answer with a status, a short code and a message."""

    def __init__(self, status: int, error: str, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: str
    message: str


def _declared(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody} for status in statuses}


# The error statuses the read and delete routes answer, declared so the schema tells the truth.
ERROR_RESPONSES = _declared(400, 401, 403, 404, 410, 502, 503)


def install_error_handlers(app: FastAPI, *, retry_after_seconds: int) -> None:
    """Answer API errors, bad requests, unknown routes and library errors as JSON."""

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        where = ".".join(str(part) for part in problems[0]["loc"]) if problems else "request"
        detail = problems[0]["msg"] if problems else "invalid request"
        return error_response(ApiError(400, "bad_request", f"{where}: {detail}"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "error")
        # Keep the exception's headers: a 405 must say which methods are allowed (Allow).
        headers = dict(error.headers or {})
        return error_response(ApiError(error.status_code, code, str(error.detail), **headers))

    @app.exception_handler(VaultError)
    async def vault_error(request: Request, error: VaultError) -> JSONResponse:
        answer = _map(error, retry_after_seconds)
        if answer.status >= 500:
            # The answer stays vague; the log keeps the cause (error messages never hold key
            # material or recording content, see vault_store.errors).
            log.error(
                "%s %s -> %d: %s: %s",
                request.method,
                request.url.path,
                answer.status,
                type(error).__name__,
                error,
            )
        return error_response(answer)


def _map(error: VaultError, retry_after_seconds: int) -> ApiError:
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
            **{"Retry-After": str(retry_after_seconds)},
        )
    if isinstance(error, CorruptData):
        return ApiError(502, "integrity", str(error))
    if isinstance(error, BackendError):
        return ApiError(502, "backend", "a backend refused the operation")
    return ApiError(502, "error", "the request could not be served")


def error_response(error: ApiError) -> JSONResponse:
    """The JSON answer of an ApiError, with its headers."""
    return JSONResponse(
        {"error": error.error, "message": error.message},
        status_code=error.status,
        headers=error.headers,
    )
