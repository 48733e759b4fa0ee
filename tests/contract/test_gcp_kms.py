"""GcpKms's own rules: every checksum sent and checked, retries only where Cloud KMS allows.

The peer is a real gRPC server speaking google.cloud.kms_v1 messages (tests/peers/kms_server.py),
so the client under test is the real KeyManagementServiceClient; faults are injected there.
"""

from __future__ import annotations

import google_crc32c
import pytest

from tests.peers.kms_server import KEY_NAME, KmsServer
from vault_store.core.crypto import DataKey
from vault_store.errors import BackendError, BackendUnavailable, ConfigError, CorruptData, KeyGone
from vault_store.kms import KeyContext
from vault_store.kms.gcp import GcpKms

CONTEXT = KeyContext(7, "0123456789abcdef0123456789abcdef")


@pytest.fixture
def kms(kms_server: KmsServer) -> GcpKms:
    return GcpKms(KEY_NAME, endpoint=kms_server.endpoint, retry_deadline=3.0)


def crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


def test_encrypt_sends_both_checksums_and_the_associated_data(
    kms: GcpKms, kms_server: KmsServer
) -> None:
    key = DataKey.generate()
    kms.wrap(key, CONTEXT)
    (request,) = kms_server.state.calls("encrypt")
    assert request.name == KEY_NAME
    assert request.additional_authenticated_data == CONTEXT.associated_data()
    assert request.plaintext_crc32c == crc(key.reveal())
    assert request.additional_authenticated_data_crc32c == crc(CONTEXT.associated_data())


def test_decrypt_goes_by_crypto_key_name_with_checksums(kms: GcpKms, kms_server: KmsServer) -> None:
    wrapped = kms.wrap(DataKey.generate(), CONTEXT)
    kms.unwrap(wrapped.ciphertext, CONTEXT)
    (request,) = kms_server.state.calls("decrypt")
    assert request.name == KEY_NAME  # not the version: Cloud KMS finds it in the ciphertext
    assert request.ciphertext_crc32c == crc(wrapped.ciphertext)
    assert request.additional_authenticated_data_crc32c == crc(CONTEXT.associated_data())


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("unverified_plaintext", "did not verify the data key"),
        ("unverified_aad", "did not verify the associated data"),
        ("verified_flags_missing", "did not verify"),
        ("wrong_ciphertext_crc", "does not match its checksum"),
        ("wrong_key_name", "not the requested one"),
    ],
)
def test_an_encrypt_answer_that_fails_a_check_is_refused(
    kms: GcpKms, kms_server: KmsServer, fault: str, message: str
) -> None:
    kms_server.state.inject("encrypt", fault)
    with pytest.raises(CorruptData, match=message):
        kms.wrap(DataKey.generate(), CONTEXT)
    assert len(kms_server.state.calls("encrypt")) == 1  # detected, not retried


@pytest.mark.parametrize(
    ("fault", "message"),
    [("wrong_plaintext_crc", "checksum"), ("short_plaintext", "256-bit")],
)
def test_a_decrypt_answer_that_fails_a_check_is_refused(
    kms: GcpKms, kms_server: KmsServer, fault: str, message: str
) -> None:
    wrapped = kms.wrap(DataKey.generate(), CONTEXT)
    kms_server.state.inject("decrypt", fault)
    with pytest.raises(CorruptData, match=message):
        kms.unwrap(wrapped.ciphertext, CONTEXT)


@pytest.mark.parametrize("fault", ["unavailable", "deadline"])
def test_unavailable_twice_then_success_is_retried(
    kms: GcpKms, kms_server: KmsServer, fault: str
) -> None:
    key = DataKey.generate()
    kms_server.state.inject("encrypt", fault, fault)
    wrapped = kms.wrap(key, CONTEXT)
    assert len(kms_server.state.calls("encrypt")) == 3
    kms_server.state.inject("decrypt", fault, fault)
    assert kms.unwrap(wrapped.ciphertext, CONTEXT) == key
    assert len(kms_server.state.calls("decrypt")) == 3


def test_retries_are_bounded(kms_server: KmsServer) -> None:
    kms = GcpKms(KEY_NAME, endpoint=kms_server.endpoint, retry_deadline=1.0)
    kms_server.state.inject("encrypt", *["unavailable"] * 500)
    with pytest.raises(BackendUnavailable):
        kms.wrap(DataKey.generate(), CONTEXT)
    assert 2 <= len(kms_server.state.calls("encrypt")) < 500


def test_wrong_associated_data_is_corrupt_and_not_retried(
    kms: GcpKms, kms_server: KmsServer
) -> None:
    wrapped = kms.wrap(DataKey.generate(), CONTEXT)
    with pytest.raises(CorruptData) as caught:
        kms.unwrap(wrapped.ciphertext, KeyContext(8, CONTEXT.replay_id))
    assert not isinstance(caught.value, KeyGone)
    assert len(kms_server.state.calls("decrypt")) == 1


@pytest.mark.parametrize("state", ["DESTROYED", "DISABLED"])
def test_a_destroyed_version_is_key_gone_and_not_retried(
    kms: GcpKms, kms_server: KmsServer, state: str
) -> None:
    old = kms.wrap(DataKey.generate(), CONTEXT)
    kms_server.state.rotate()
    new_key = DataKey.generate()
    new = kms.wrap(new_key, CONTEXT)
    assert new.kek != old.kek and new.kek == kms.primary_kek()
    kms_server.state.set_state(1, state)
    with pytest.raises(KeyGone):
        kms.unwrap(old.ciphertext, CONTEXT)
    assert len(kms_server.state.calls("decrypt")) == 1
    assert kms.unwrap(new.ciphertext, CONTEXT) == new_key


def test_permission_denied_is_a_backend_error_naming_the_role(
    kms: GcpKms, kms_server: KmsServer
) -> None:
    wrapped = kms.wrap(DataKey.generate(), CONTEXT)
    kms_server.state.inject("decrypt", "denied")
    with pytest.raises(BackendError, match="cryptoKeyEncrypterDecrypter") as caught:
        kms.unwrap(wrapped.ciphertext, CONTEXT)
    assert not isinstance(caught.value, BackendUnavailable)


def test_errors_never_carry_key_bytes(kms: GcpKms, kms_server: KmsServer) -> None:
    key = DataKey.generate()
    wrapped = kms.wrap(key, CONTEXT)
    kms_server.state.inject("decrypt", "wrong_plaintext_crc")
    with pytest.raises(CorruptData) as caught:
        kms.unwrap(wrapped.ciphertext, CONTEXT)
    text = f"{caught.value!s} {caught.value!r}"
    for secret in (key.reveal(), wrapped.ciphertext):
        assert secret.hex() not in text and repr(secret) not in text


def test_a_malformed_key_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cryptoKeys"):
        GcpKms("projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1")
