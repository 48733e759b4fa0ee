"""The decrypting read API (FastAPI): tenant-scoped reads, streamed recordings, deletes.

Stateless: every replica builds its own Vault from the environment on first use, so any number
can run behind a load balancer. Errors are JSON ``{"error", "message"}``; a replay of a project
the token does not cover answers 404 exactly like one that never existed. The routes live in
their routers (health, recordings, deletions, the Sentry-shaped routes, the viewer page); this
module only assembles them.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware

from vault_store.api import deletions, health, recordings, sentry, viewer
from vault_store.api.deps import ApiContext, ApiLimits, VaultState
from vault_store.api.errors import install_error_handlers
from vault_store.api.metrics import Metrics
from vault_store.api.middleware import Observe
from vault_store.settings import ApiPolicy, Settings
from vault_store.vault import Vault

__all__ = ["ApiLimits", "create_app"]


def create_app(
    vault_factory: Callable[[], Vault] | None = None,
    *,
    limits: ApiLimits | None = None,
    policy: ApiPolicy | None = None,
    metrics_token: str | None = None,
) -> FastAPI:
    """The API over a Vault (built from the environment on first use unless given), with the
    slug mapping and CORS origins of `policy` (read from the environment unless given).

    `/metrics` requires `metrics_token` as a bearer token (default: VAULT_STORE_METRICS_TOKEN).
    """
    limits = limits or ApiLimits()
    settings = Settings.from_env() if policy is None or metrics_token is None else None
    if policy is None:
        assert settings is not None
        policy = settings.api
    if metrics_token is None:
        assert settings is not None
        metrics_token = settings.metrics_token
    vaults = VaultState(vault_factory or (lambda: Vault.from_settings(Settings.from_env())))
    metrics = Metrics(vaults.counters)
    app = FastAPI(
        title="vault-store",
        version="1",
        description="Decrypting read API of vault-store: replays, recordings, deletions.",
    )
    app.state.api = ApiContext(vaults, limits, metrics, policy, metrics_token)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    install_error_handlers(app, retry_after_seconds=limits.retry_after_seconds)
    app.add_middleware(Observe, metrics=metrics, limits=limits)
    if policy.cors_origins:
        # Added last, so outermost: a preflight is answered before authentication, and every
        # answer (errors too) carries the headers a browser needs to read it.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(policy.cors_origins),
            allow_methods=["GET", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            # The bearer token travels in a header, never in cookies: no credentials mode.
            allow_credentials=False,
            expose_headers=["Link", "X-Next-Cursor", "Retry-After", "Content-Disposition"],
            max_age=600,
        )
    # Included in this order so the OpenAPI paths keep their order.
    for router in (
        health.router,
        recordings.router,
        deletions.router,
        sentry.router,
        sentry.organizations,
    ):
        app.include_router(router)
    # The replay viewer page (outside the OpenAPI schema): plays a replay through the routes above.
    app.include_router(viewer.router)
    return app
