"""The start-up check that the configured KMS holds every KEK the catalog's rows need."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from vault_store.catalog import Catalog
from vault_store.errors import ConfigError
from vault_store.kms import Kms, LocalKms


def check_keks(
    catalog: Catalog, kms: Kms, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> None:
    """Raise ConfigError naming the first KEK the catalog needs that `kms` does not hold.

    A local key file must hold each local KEK, with the key material first recorded for it (its
    fingerprint): a replaced key file is a configuration error, not a wrapped key that "does not
    belong to this replay". A Cloud KMS KEK must be a version of the configured key (the service
    itself knows which versions exist). The primary KEK is then recorded, with its fingerprint,
    before anything is wrapped under it.
    """
    needed = catalog.keys.keks_in_use()
    for kek, recorded in sorted(needed.items()):
        problem = _problem(kms, kek, recorded)
        if problem:
            raise ConfigError(problem)
    primary = kms.primary_kek()
    fingerprint = kms.fingerprint(primary) if isinstance(kms, LocalKms) else None
    if primary not in needed or (fingerprint is not None and needed[primary] is None):
        catalog.keys.record_kek(primary, fingerprint, at=clock())


def _problem(kms: Kms, kek: str, recorded: bytes | None) -> str | None:
    if isinstance(kms, LocalKms):
        if not kms.holds(kek):
            return (
                f"the catalog holds keys wrapped under {kek}, which the configured key file "
                f"{kms.path} does not hold: restore that key file or correct VAULT_STORE_KMS_URL"
            )
        if recorded is not None and kms.fingerprint(kek) != recorded:
            return (
                f"key file {kms.path} holds a different key for {kek} than the catalog's keys "
                "were wrapped under: the key file was replaced; restore the original"
            )
        return None
    key_name = getattr(kms, "key_name", None)
    if isinstance(key_name, str) and not kek.startswith(key_name + "/cryptoKeyVersions/"):
        return (
            f"the catalog holds keys wrapped under {kek}, which is not a version of the "
            f"configured key {key_name}: correct VAULT_STORE_KMS_URL"
        )
    return None
