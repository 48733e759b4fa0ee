"""A Cloud KMS peer for tests: the KeyManagementService Encrypt and Decrypt methods over real gRPC.

It speaks the google.cloud.kms_v1 message types, so the real KeyManagementServiceClient is what
talks to it. Keys are AES-256-GCM per version; the ciphertext carries the version number, as
Cloud KMS's does, so Decrypt by CryptoKey name finds the version. It checks the request CRC32C
fields like the service does, and `inject` queues faults for the next calls.
"""

from __future__ import annotations

import os
import struct
import threading
from collections import deque
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import google_crc32c
import grpc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.cloud.kms_v1 import types

SERVICE = "google.cloud.kms.v1.KeyManagementService"
KEY_NAME = "projects/test/locations/global/keyRings/vault/cryptoKeys/dek"
_VERSION = struct.Struct(">I")

# Faults `inject` accepts; each applies to one call of the method it names.
FAULTS = {
    "encrypt": {
        "unverified_plaintext",
        "unverified_aad",
        "verified_flags_missing",
        "wrong_ciphertext_crc",
        "wrong_key_name",
        "unavailable",
        "deadline",
    },
    "decrypt": {"wrong_plaintext_crc", "short_plaintext", "unavailable", "deadline", "denied"},
}


def _crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


@dataclass
class _Version:
    aead: AESGCM
    state: str = "ENABLED"


@dataclass
class FakeKms:
    """The service's state: versions of one CryptoKey, the primary, queued faults, a call log."""

    key_name: str = KEY_NAME
    versions: dict[int, _Version] = field(default_factory=dict)
    primary: int = 0
    faults: dict[str, deque[str]] = field(
        default_factory=lambda: {"encrypt": deque(), "decrypt": deque()}
    )
    requests: list[tuple[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rotate()

    def rotate(self) -> str:
        """Add a version and make it primary, as `gcloud kms keys set-primary-version` would."""
        with self.lock:
            self.primary = max(self.versions, default=0) + 1
            self.versions[self.primary] = _Version(AESGCM(os.urandom(32)))
            return self.version_name(self.primary)

    def set_state(self, version: int, state: str) -> None:
        """DISABLED or DESTROYED: Decrypt then fails with FAILED_PRECONDITION."""
        with self.lock:
            self.versions[version].state = state

    def inject(self, method: str, *faults: str) -> None:
        """Queue faults for the next calls of `method`, one per call."""
        for fault in faults:
            if fault not in FAULTS[method]:
                raise ValueError(f"unknown {method} fault {fault!r}")
            self.faults[method].append(fault)

    def version_name(self, version: int) -> str:
        return f"{self.key_name}/cryptoKeyVersions/{version}"

    def calls(self, method: str) -> list[Any]:
        return [request for name, request in self.requests if name == method]

    def _next_fault(self, method: str) -> str | None:
        with self.lock:
            return self.faults[method].popleft() if self.faults[method] else None

    def encrypt(
        self, request: types.EncryptRequest, context: grpc.ServicerContext
    ) -> types.EncryptResponse:
        self.requests.append(("encrypt", request))
        fault = self._next_fault("encrypt")
        _transient(fault, context)
        if request.name not in (self.key_name, *map(self.version_name, self.versions)):
            context.abort(grpc.StatusCode.NOT_FOUND, f"{request.name} not found")
        _check_crc(context, request.plaintext, request.plaintext_crc32c, "plaintext")
        aad = request.additional_authenticated_data
        _check_crc(context, aad, request.additional_authenticated_data_crc32c, "aad")
        with self.lock:
            version = self.primary
            aead = self.versions[version].aead
        nonce = os.urandom(12)
        ciphertext = _VERSION.pack(version) + nonce + aead.encrypt(nonce, request.plaintext, aad)
        name = self.version_name(version)
        if fault == "wrong_key_name":
            name = f"{self.key_name}-other/cryptoKeyVersions/{version}"
        return types.EncryptResponse(
            name=name,
            ciphertext=ciphertext,
            ciphertext_crc32c=_crc(ciphertext) ^ (1 if fault == "wrong_ciphertext_crc" else 0),
            verified_plaintext_crc32c=fault
            not in ("unverified_plaintext", "verified_flags_missing")
            and "plaintext_crc32c" in request,
            verified_additional_authenticated_data_crc32c=fault
            not in ("unverified_aad", "verified_flags_missing")
            and "additional_authenticated_data_crc32c" in request,
        )

    def decrypt(
        self, request: types.DecryptRequest, context: grpc.ServicerContext
    ) -> types.DecryptResponse:
        self.requests.append(("decrypt", request))
        fault = self._next_fault("decrypt")
        _transient(fault, context)
        if fault == "denied":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "permission denied")
        if request.name != self.key_name:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "decrypt takes a CryptoKey name")
        _check_crc(context, request.ciphertext, request.ciphertext_crc32c, "ciphertext")
        aad = request.additional_authenticated_data
        _check_crc(context, aad, request.additional_authenticated_data_crc32c, "aad")
        ciphertext = request.ciphertext
        if len(ciphertext) < _VERSION.size + 12 + 16:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Decryption failed")
        (number,) = _VERSION.unpack_from(ciphertext)
        with self.lock:
            version = self.versions.get(number)
        if version is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Decryption failed")
        if version.state != "ENABLED":
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{self.version_name(number)} is not enabled, current state is: {version.state}",
            )
        try:
            plaintext = version.aead.decrypt(ciphertext[4:16], ciphertext[16:], aad)
        except InvalidTag:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Decryption failed")
        if fault == "short_plaintext":
            plaintext = plaintext[:16]
        return types.DecryptResponse(
            plaintext=plaintext,
            plaintext_crc32c=_crc(plaintext) ^ (1 if fault == "wrong_plaintext_crc" else 0),
            used_primary=number == self.primary,
        )


def _transient(fault: str | None, context: grpc.ServicerContext) -> None:
    if fault == "unavailable":
        context.abort(grpc.StatusCode.UNAVAILABLE, "injected: unavailable")
    if fault == "deadline":
        context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "injected: deadline exceeded")


def _check_crc(context: grpc.ServicerContext, data: bytes, sent: int | None, what: str) -> None:
    # Cloud KMS refuses a request whose checksum does not match what it received.
    if sent is not None and sent != _crc(data):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{what} checksum mismatch")


class KmsServer:
    """FakeKms served on 127.0.0.1 on a free port; stop() ends it."""

    def __init__(self, state: FakeKms | None = None) -> None:
        self.state = state or FakeKms()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handlers = {
            "Encrypt": grpc.unary_unary_rpc_method_handler(
                self.state.encrypt,
                request_deserializer=types.EncryptRequest.deserialize,
                response_serializer=types.EncryptResponse.serialize,
            ),
            "Decrypt": grpc.unary_unary_rpc_method_handler(
                self.state.decrypt,
                request_deserializer=types.DecryptRequest.deserialize,
                response_serializer=types.DecryptResponse.serialize,
            ),
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),)
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.stop(grace=None)
