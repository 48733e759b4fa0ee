"""LocalKms: versioned 256-bit KEKs in a mode-0600 key file, AES-GCM wrapping.

Key file (JSON)::

    {"format": 1, "primary": 2, "keys": {"1": "<base64 32 bytes>", "2": "..."}}

Wrapped key layout: version (4 bytes, big-endian) | nonce (12) | AES-GCM(DEK) with tag (48).
The version travels inside the ciphertext, so unwrapping works under any version still in the
file, like Cloud KMS decrypting by CryptoKey name.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import os
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault_store.core.crypto import KEY_BYTES, NONCE_BYTES, DataKey
from vault_store.errors import ConfigError, CorruptData
from vault_store.kms.base import KeyContext, WrappedKey

_FORMAT = 1
_VERSION = struct.Struct(">I")


class LocalKms:
    """A Kms over a local key file (mode 0600).

    With `create` (the default for a library caller) a missing file is created; the CLI, API and
    workers pass `create` only for a catalog that holds no wrapped key yet (or `vault-store init`),
    so a lost or mistyped key file is a configuration error naming the path, never silently
    replaced by a new key.
    """

    def __init__(
        self,
        path: Path,
        *,
        create: bool = True,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if not path.is_absolute():
            raise ConfigError(f"local KMS key file must be an absolute path, got {path}")
        self._path = path
        self._random_bytes = random_bytes
        self._lock = threading.Lock()
        self._primary, self._keys = self._load_or_create(create=create)
        # The primary's name, as every wrap returns it (changed only by rotate, under the lock).
        self._primary_name = self._name(self._primary)
        self._materials: dict[int, bytes] = {}

    @property
    def path(self) -> Path:
        """The key file."""
        return self._path

    def primary_kek(self) -> str:
        """Name of the primary version, as stored on each row's `kek` column."""
        return self._name(self._primary)

    def wrap(self, key: DataKey, context: KeyContext) -> WrappedKey:
        """AES-GCM wrap under the primary version with `context` as associated data."""
        with self._lock:
            version = self._primary
            aead = self._keys[version]
            name = self._primary_name
        nonce = self._random_bytes(NONCE_BYTES)
        ciphertext = aead.encrypt(nonce, key.reveal(), context.associated_data())
        return WrappedKey(_VERSION.pack(version) + nonce + ciphertext, name)

    def unwrap(self, ciphertext: bytes, context: KeyContext) -> DataKey:
        """Unwrap with the version named inside the ciphertext."""
        if len(ciphertext) != _VERSION.size + NONCE_BYTES + KEY_BYTES + 16:
            raise CorruptData("wrapped key has the wrong length")
        (version,) = _VERSION.unpack_from(ciphertext)
        with self._lock:
            aead = self._keys.get(version)
        if aead is None:
            raise CorruptData(f"key version {self._name(version)} is not in the key file")
        nonce = ciphertext[_VERSION.size : _VERSION.size + NONCE_BYTES]
        try:
            material = aead.decrypt(
                nonce, ciphertext[_VERSION.size + NONCE_BYTES :], context.associated_data()
            )
        except InvalidTag:
            raise CorruptData("wrapped key does not belong to this replay") from None
        return DataKey(material)

    def rotate(self) -> str:
        """Add a new version and make it primary; older versions still unwrap."""
        with self._lock:
            version = max(self._keys) + 1
            document = self._read_document()
            document["keys"][str(version)] = _b64(self._random_bytes(KEY_BYTES))
            document["primary"] = version
            self._write_document(document, replace=True)
            self._keys[version] = AESGCM(base64.b64decode(document["keys"][str(version)]))
            self._primary = version
            self._primary_name = self._name(version)
        return self._name(version)

    def holds(self, kek: str) -> bool:
        """Whether `kek` names a version in this key file."""
        return self._version_of(kek) is not None

    def fingerprint(self, kek: str) -> bytes | None:
        """A keyed digest identifying the key material of `kek` (None if not in this file).

        HMAC-SHA256 of a fixed label under the key itself: it tells one key from another and
        reveals nothing of the key, like a KMS key check value.
        """
        version = self._version_of(kek)
        if version is None:
            return None
        material = self._read_material(version)
        return hmac.digest(material, b"vault-store kek fingerprint v1", "sha256")[:16]

    def _version_of(self, kek: str) -> int | None:
        prefix = f"local-kms:{self._path}#v"
        if not kek.startswith(prefix) or not kek[len(prefix) :].isdigit():
            return None
        version = int(kek[len(prefix) :])
        with self._lock:
            return version if version in self._keys else None

    def _read_material(self, version: int) -> bytes:
        with self._lock:
            if version not in self._materials:
                encoded = self._read_document()["keys"][str(version)]
                self._materials[version] = base64.b64decode(encoded, validate=True)
            return self._materials[version]

    def _name(self, version: int) -> str:
        return f"local-kms:{self._path}#v{version}"

    def _load_or_create(self, *, create: bool) -> tuple[int, dict[int, AESGCM]]:
        if not self._path.exists() and not create:
            raise ConfigError(
                f"local KMS key file {self._path} does not exist, and the catalog holds keys "
                "wrapped by a local KMS: restore the key file or correct VAULT_STORE_KMS_URL "
                "(a new key file is made only for a catalog with no wrapped key yet)"
            )
        if not self._path.exists():
            document: dict[str, Any] = {
                "format": _FORMAT,
                "primary": 1,
                "keys": {"1": _b64(self._random_bytes(KEY_BYTES))},
            }
            # If another process created it first, read theirs below.
            with contextlib.suppress(FileExistsError):
                self._write_document(document, replace=False)
        document = self._read_document()
        try:
            keys = {
                int(version): AESGCM(base64.b64decode(encoded, validate=True))
                for version, encoded in document["keys"].items()
            }
            primary = int(document["primary"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"local KMS key file {self._path} is malformed") from exc
        if primary not in keys:
            raise ConfigError(f"local KMS key file {self._path}: primary version is missing")
        return primary, keys

    def _read_document(self) -> dict[str, Any]:
        try:
            mode = self._path.stat().st_mode
        except FileNotFoundError:
            raise ConfigError(f"local KMS key file {self._path} does not exist") from None
        except OSError as exc:
            raise ConfigError(
                f"local KMS key file {self._path} is unreadable ({exc.strerror})"
            ) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"local KMS key file {self._path} is accessible by group or others "
                f"(mode {stat.S_IMODE(mode):o}); run: chmod 600 {self._path}"
            )
        try:
            document = json.loads(self._path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"local KMS key file {self._path} is unreadable") from exc
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            raise ConfigError(f"local KMS key file {self._path} has an unknown format")
        return document

    def _write_document(self, document: dict[str, Any], *, replace: bool) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(document, indent=1).encode()
        target = self._path.with_suffix(".tmp") if replace else self._path
        # O_EXCL on first creation: two processes starting together must not both write keys.
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
        fd = os.open(target, flags, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(target, self._path)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
