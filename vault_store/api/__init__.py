"""The decrypting read API over HTTP."""

from __future__ import annotations

from vault_store.api.app import ApiLimits, create_app
from vault_store.api.tokens import PERMISSIONS, Principal, TokenStore

__all__ = ["PERMISSIONS", "ApiLimits", "Principal", "TokenStore", "create_app"]
