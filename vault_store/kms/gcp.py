"""GcpKms: data keys wrapped by Google Cloud KMS, with every CRC32C field sent and verified.

Encrypt sends the plaintext's and the associated data's CRC32C and requires the service to say
it verified both, the returned ciphertext to match its checksum, and the answering key to be a
version of ours. Decrypt goes by CryptoKey name (the version travels inside the ciphertext) and
requires the plaintext to match its checksum and to be a 32-byte key. Only UNAVAILABLE and
DEADLINE_EXCEEDED are retried, with backoff, within a deadline.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import google_crc32c
import grpc
from google.api_core import exceptions as api
from google.api_core.retry import Retry, if_exception_type
from google.cloud import kms_v1
from google.cloud.kms_v1.services.key_management_service.transports import (
    KeyManagementServiceGrpcTransport,
)

from vault_store.core.crypto import KEY_BYTES, DataKey
from vault_store.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    CorruptData,
    KeyGone,
)
from vault_store.kms.base import KeyContext, WrappedKey

_BACKEND = "gcp-kms"
_PROBE = KeyContext(0, "vault-store-primary-probe")


class GcpKms:
    """A Kms over one Cloud KMS CryptoKey (symmetric, ENCRYPT_DECRYPT purpose)."""

    def __init__(
        self,
        key_name: str,
        *,
        endpoint: str | None = None,
        client: kms_v1.KeyManagementServiceClient | None = None,
        retry_deadline: float = 20.0,
        request_timeout: float = 10.0,
    ) -> None:
        self._key_name = _checked_key_name(key_name)
        self._client = client if client is not None else _client(endpoint)
        self._retry = Retry(
            predicate=if_exception_type(api.ServiceUnavailable, api.DeadlineExceeded),
            initial=0.05,
            maximum=2.0,
            multiplier=2.0,
            timeout=retry_deadline,
        )
        self._timeout = request_timeout

    @property
    def key_name(self) -> str:
        """The CryptoKey resource name."""
        return self._key_name

    def wrap(self, key: DataKey, context: KeyContext) -> WrappedKey:
        """Encrypt under the key's primary version, verifying every checksum of the exchange."""
        plaintext, aad = key.reveal(), context.associated_data()
        response = self._call(
            "encrypt",
            {
                "name": self._key_name,
                "plaintext": plaintext,
                "additional_authenticated_data": aad,
                "plaintext_crc32c": _crc32c(plaintext),
                "additional_authenticated_data_crc32c": _crc32c(aad),
            },
        )
        if not response.verified_plaintext_crc32c:
            raise CorruptData("Cloud KMS did not verify the data key's checksum in transit")
        if not response.verified_additional_authenticated_data_crc32c:
            raise CorruptData("Cloud KMS did not verify the associated data's checksum in transit")
        if response.ciphertext_crc32c != _crc32c(response.ciphertext):
            raise CorruptData("Cloud KMS ciphertext does not match its checksum")
        if not response.name.startswith(self._key_name + "/cryptoKeyVersions/"):
            raise CorruptData("Cloud KMS answered with a key that is not the requested one")
        return WrappedKey(bytes(response.ciphertext), response.name)

    def unwrap(self, ciphertext: bytes, context: KeyContext) -> DataKey:
        """Decrypt by CryptoKey name and check the plaintext against its checksum."""
        aad = context.associated_data()
        response = self._call(
            "decrypt",
            {
                "name": self._key_name,
                "ciphertext": ciphertext,
                "additional_authenticated_data": aad,
                "ciphertext_crc32c": _crc32c(ciphertext),
                "additional_authenticated_data_crc32c": _crc32c(aad),
            },
        )
        plaintext = bytes(response.plaintext)
        if response.plaintext_crc32c != _crc32c(plaintext):
            raise CorruptData("Cloud KMS plaintext does not match its checksum")
        if len(plaintext) != KEY_BYTES:
            raise CorruptData("Cloud KMS returned something that is not a 256-bit data key")
        return DataKey(plaintext)

    def primary_kek(self) -> str:
        """The primary version's name, learned from a probe Encrypt.

        Encrypt answers with the version it used; asking it keeps the IAM needs at
        Encrypter/Decrypter (reading the CryptoKey would need the viewer role too).
        """
        return self.wrap(DataKey.generate(), _PROBE).kek

    def _call(self, method: str, request: dict[str, Any]) -> Any:
        try:
            return getattr(self._client, method)(
                request=request, retry=self._retry, timeout=self._timeout
            )
        except Exception as exc:  # noqa: BLE001 - every vendor error is mapped in one place
            raise _map(exc, method) from None


def _crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))


def _checked_key_name(name: str) -> str:
    parts = name.split("/")
    if (
        len(parts) != 8
        or parts[0::2] != ["projects", "locations", "keyRings", "cryptoKeys"]
        or not all(parts[1::2])
    ):
        raise ConfigError(
            f"Cloud KMS key {name!r}: expected projects/P/locations/L/keyRings/R/cryptoKeys/K"
        )
    return name


def _client(endpoint: str | None) -> kms_v1.KeyManagementServiceClient:
    """The real client; a loopback endpoint means a local peer: plain-text gRPC, no credentials."""
    if not endpoint:
        return kms_v1.KeyManagementServiceClient()
    if _is_loopback(endpoint):
        transport = KeyManagementServiceGrpcTransport(channel=grpc.insecure_channel(endpoint))
        return kms_v1.KeyManagementServiceClient(transport=transport)
    return kms_v1.KeyManagementServiceClient(client_options={"api_endpoint": endpoint})


def _is_loopback(endpoint: str) -> bool:
    host = endpoint.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _map(exc: Exception, op: str) -> Exception:
    """The one place Cloud KMS errors become vault-store errors (never carrying key bytes)."""
    if isinstance(exc, api.RetryError | api.ServiceUnavailable | api.DeadlineExceeded):
        return BackendUnavailable(f"{type(exc).__name__} after retries", backend=_BACKEND, op=op)
    if isinstance(exc, api.InvalidArgument):
        # Wrong associated data or an altered ciphertext: Cloud KMS cannot tell them apart.
        return CorruptData("wrapped key does not belong to this replay or was altered")
    if isinstance(exc, api.FailedPrecondition):
        return KeyGone("the Cloud KMS key version that wrapped this key is destroyed or disabled")
    if isinstance(exc, api.PermissionDenied | api.Unauthenticated):
        return BackendError(
            f"permission denied ({type(exc).__name__}); the caller needs "
            "roles/cloudkms.cryptoKeyEncrypterDecrypter on the key",
            backend=_BACKEND,
            op=op,
        )
    if isinstance(exc, api.NotFound):
        return ConfigError("Cloud KMS key not found: check VAULT_STORE_KMS_URL")
    return BackendError(type(exc).__name__, backend=_BACKEND, op=op)
