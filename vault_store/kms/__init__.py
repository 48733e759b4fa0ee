"""Key management: the Kms port, its backends, and the choice of backend by URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from vault_store.errors import ConfigError
from vault_store.extras import import_extra
from vault_store.kms.base import KeyContext, Kms, WrappedKey
from vault_store.kms.local import LocalKms

__all__ = ["KeyContext", "Kms", "LocalKms", "WrappedKey", "kms_from_url"]


def kms_from_url(url: str, *, endpoint: str | None = None, create_local: bool = True) -> Kms:
    """Build the Kms a URL names: ``local-kms:///abs/path/kek.json`` or
        ``gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K`` (`endpoint`: host:port of
        another Cloud KMS endpoint; a loopback one is spoken to in plain text). A missing local key
    file is created only with `create_local`."""
    parts = urlsplit(url)
    if parts.scheme == "gcp-kms":
        # Imported here so the embedded default never loads gRPC and the Google client.
        gcp = import_extra("vault_store.kms.gcp", extra="gcp", feature=f"KMS URL {url!r}")
        kms: Kms = gcp.GcpKms(parts.netloc + parts.path, endpoint=endpoint)
        return kms
    if parts.scheme == "local-kms":
        if parts.netloc or not parts.path.startswith("/"):
            raise ConfigError(f"KMS URL {url!r}: expected local-kms:///absolute/path/kek.json")
        return LocalKms(Path(parts.path), create=create_local)
    raise ConfigError(
        f"KMS URL {url!r}: unknown scheme {parts.scheme!r} (supported: local-kms, gcp-kms)"
    )
