"""The decrypting read API (FastAPI): tenant-scoped reads, streamed recordings, deletes.

Stateless: every replica builds its own Vault from the environment on first use, so any number
can run behind a load balancer. Errors are JSON ``{"error", "message"}``; a replay of a project
the token does not cover answers 404 exactly like one that never existed. The routes live in
their routers (health, recordings, deletions); this module only assembles them.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware

from vault_store.api import deletions, health, recordings
from vault_store.api.deps import ApiContext, ApiLimits, VaultState
from vault_store.api.errors import install_error_handlers
from vault_store.api.metrics import Metrics
from vault_store.api.middleware import Observe
from vault_store.settings import Settings
from vault_store.vault import Vault

__all__ = ["ApiLimits", "create_app"]


def create_app(
    vault_factory: Callable[[], Vault] | None = None,
    *,
    limits: ApiLimits | None = None,
    metrics_token: str | None = None,
) -> FastAPI:
    """The API over a Vault (built from the environment on first use unless given).

    `/metrics` requires `metrics_token` as a bearer token (default: VAULT_STORE_METRICS_TOKEN).
    """
    limits = limits or ApiLimits()
    if metrics_token is None:
        metrics_token = Settings.from_env().metrics_token
    vaults = VaultState(vault_factory or (lambda: Vault.from_settings(Settings.from_env())))
    metrics = Metrics(vaults.counters)
    app = FastAPI(
        title="vault-store",
        version="1",
        description="Decrypting read API of vault-store: replays, recordings, deletions.",
    )
    app.state.api = ApiContext(vaults, limits, metrics, metrics_token)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    install_error_handlers(app, retry_after_seconds=limits.retry_after_seconds)
    app.add_middleware(Observe, metrics=metrics, limits=limits)
    # Included in this order so the OpenAPI paths keep their order.
    for router in (health.router, recordings.router, deletions.router):
        app.include_router(router)
    return app
