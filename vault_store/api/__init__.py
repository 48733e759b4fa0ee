"""The decrypting read API over HTTP (needs the `api` extra: FastAPI and uvicorn)."""

from __future__ import annotations

from vault_store.api.app import ApiLimits, create_app

__all__ = ["ApiLimits", "create_app"]
