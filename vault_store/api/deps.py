"""What every route depends on: the process's Vault, the limits, the metrics and the caller."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from vault_store.api.errors import ApiError
from vault_store.api.metrics import Metrics
from vault_store.services.tokens import Principal
from vault_store.settings import ApiPolicy
from vault_store.vault import Vault

KMS_HEALTH_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiLimits:
    """Bounds of one request: sealed bytes per response, seconds to first byte."""

    max_response_bytes: int = 64 * 1024 * 1024
    request_timeout_seconds: float = 30.0
    retry_after_seconds: int = 5


class VaultState:
    """The process's Vault, built once on first use (after any fork)."""

    def __init__(self, factory: Callable[[], Vault]) -> None:
        self._factory = factory
        self._vault: Vault | None = None
        self._lock = threading.Lock()
        self._kms_checked_at = -KMS_HEALTH_INTERVAL_SECONDS
        self._kms_problem: str | None = None

    def vault(self) -> Vault:
        """The Vault, built on the first call."""
        if self._vault is None:
            with self._lock:
                if self._vault is None:
                    self._vault = self._factory()
        return self._vault

    def health(self) -> dict[str, str | None]:
        """Each backend and why it is down (None: up). The KMS is asked at most once a
        minute (Cloud KMS bills each probe); catalog and blob store on every call."""
        vault = self.vault()
        now = time.monotonic()
        ask_kms = now - self._kms_checked_at >= KMS_HEALTH_INTERVAL_SECONDS
        found = vault.health(kms=ask_kms)
        if ask_kms:
            self._kms_problem = found["kms"]
            self._kms_checked_at = now
        found.setdefault("kms", self._kms_problem)
        return found

    def counters(self) -> dict[str, float]:
        """Reader and key-cache counters, for /metrics (zeros before the first request)."""
        if self._vault is None:
            return {}
        reads = self._vault.read_counters()
        keys = self._vault.key_cache_stats()
        return {
            "backend_gets": reads.gets,
            "backend_bytes": reads.bytes_fetched,
            "kms_unwraps": reads.unwraps,
            "key_cache_hits": keys.hits,
            "key_cache_misses": keys.misses,
        }


@dataclass(frozen=True, slots=True)
class ApiContext:
    """One app's state, kept on ``app.state.api``."""

    vaults: VaultState
    limits: ApiLimits
    metrics: Metrics
    policy: ApiPolicy = field(default_factory=ApiPolicy)
    # Bearer token /metrics requires (None: open).
    metrics_token: str | None = None

    def vault(self) -> Vault:
        """The process's Vault."""
        return self.vaults.vault()


def api_context(request: Request) -> ApiContext:
    """The app's context (a dependency: it adds nothing to the OpenAPI schema)."""
    context: ApiContext = request.app.state.api
    return context


def principal(request: Request) -> Principal:
    """The caller behind the bearer token (401 without a valid one)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>")
    found = api_context(request).vault().authenticate(token.strip())
    if found is None:
        raise ApiError(401, "unauthorized", "the token is not valid")
    return found


Context = Annotated[ApiContext, Depends(api_context)]
Caller = Annotated[Principal, Depends(principal)]


def may_read(context: ApiContext, caller: Principal, project_id: int) -> Vault:
    """The vault, once the caller may read this project (404 if not theirs, 403 if no read).

    Reads need nothing more: the reader answers 404 or 410 (mapped from ReplayNotFound /
    ReplayShredded) before the first byte is sent.
    """
    if not caller.knows(project_id):
        raise ApiError(404, "not_found", "no such replay")
    if not caller.may("read", project_id):
        raise ApiError(403, "forbidden", "this token may not read")
    return context.vault()
