"""One contract for every Kms backend: the local key file, and Cloud KMS through the real
google-cloud-kms client talking gRPC to the peer in tests/peers/kms_server.py."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.peers.kms_server import KEY_NAME, KmsServer
from vault_store.core.crypto import DataKey
from vault_store.errors import ConfigError, CorruptData
from vault_store.kms import KeyContext, Kms, LocalKms, kms_from_url
from vault_store.kms.gcp import GcpKms

CONTEXT = KeyContext(7, "0123456789abcdef0123456789abcdef")


@pytest.fixture(params=["local", "gcp"])
def kms(request: pytest.FixtureRequest, tmp_path: Path) -> Kms:
    if request.param == "gcp":
        server: KmsServer = request.getfixturevalue("kms_server")
        return GcpKms(KEY_NAME, endpoint=server.endpoint)
    return LocalKms(tmp_path / "kek.json")


def test_primary_kek_names_the_version_new_keys_are_wrapped_under(kms: Kms) -> None:
    assert kms.wrap(DataKey.generate(), CONTEXT).kek == kms.primary_kek()


def test_wrap_unwrap_round_trip(kms: Kms) -> None:
    key = DataKey.generate()
    wrapped = kms.wrap(key, CONTEXT)
    assert key.reveal() not in wrapped.ciphertext
    assert kms.unwrap(wrapped.ciphertext, CONTEXT) == key
    assert wrapped.kek == kms.primary_kek()


@pytest.mark.parametrize(
    "other",
    [KeyContext(8, CONTEXT.replay_id), KeyContext(7, "f" * 32)],
    ids=["other project", "other replay"],
)
def test_wrapped_key_does_not_unwrap_for_another_owner(kms: Kms, other: KeyContext) -> None:
    wrapped = kms.wrap(DataKey.generate(), CONTEXT)
    with pytest.raises(CorruptData):
        kms.unwrap(wrapped.ciphertext, other)


def test_tampered_wrapped_key_is_refused(kms: Kms) -> None:
    ciphertext = bytearray(kms.wrap(DataKey.generate(), CONTEXT).ciphertext)
    ciphertext[-1] ^= 1
    with pytest.raises(CorruptData):
        kms.unwrap(bytes(ciphertext), CONTEXT)


def test_wrapped_key_repr_hides_the_ciphertext(kms: Kms) -> None:
    wrapped = kms.wrap(DataKey.generate(), CONTEXT)
    assert wrapped.ciphertext.hex() not in repr(wrapped)
    assert str(wrapped.ciphertext) not in repr(wrapped)


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "kek.json"
    first = LocalKms(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    wrapped = first.wrap(DataKey(bytes(32)), CONTEXT)
    assert LocalKms(path).unwrap(wrapped.ciphertext, CONTEXT) == DataKey(bytes(32))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "kek.json"
    LocalKms(path)
    os.chmod(path, mode)
    with pytest.raises(ConfigError, match="chmod 600"):
        LocalKms(path)


def test_rotation_keeps_old_versions_unwrapping(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "kek.json")
    old = kms.wrap(DataKey(bytes(32)), CONTEXT)
    new_name = kms.rotate()
    new = kms.wrap(DataKey(bytes(32)), CONTEXT)
    assert new.kek == new_name != old.kek
    reopened = LocalKms(tmp_path / "kek.json")
    assert reopened.primary_kek() == new_name
    assert reopened.unwrap(old.ciphertext, CONTEXT) == reopened.unwrap(new.ciphertext, CONTEXT)
    assert stat.S_IMODE(os.stat(tmp_path / "kek.json").st_mode) == 0o600


def test_a_destroyed_version_no_longer_unwraps(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    kms = LocalKms(path)
    old = kms.wrap(DataKey(bytes(32)), CONTEXT)
    kms.rotate()
    document = json.loads(path.read_text())
    del document["keys"]["1"]
    path.write_text(json.dumps(document))
    with pytest.raises(CorruptData, match="not in the key file"):
        LocalKms(path).unwrap(old.ciphertext, CONTEXT)


def test_malformed_key_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"{not json")
    os.close(fd)
    with pytest.raises(ConfigError, match="unreadable"):
        LocalKms(path)


def test_kms_urls(tmp_path: Path, kms_server: KmsServer) -> None:
    assert isinstance(kms_from_url(f"local-kms://{tmp_path}/k.json"), LocalKms)
    gcp = kms_from_url(f"gcp-kms://{KEY_NAME}", endpoint=kms_server.endpoint)
    assert isinstance(gcp, GcpKms) and gcp.key_name == KEY_NAME
    for bad in (
        "local-kms://rel/k.json",
        "aws-kms://x",
        "local-kms:k.json",
        "gcp-kms://projects/p/locations/l/keyRings/r",
        "gcp-kms://projects/p/locations/l/keyRings//cryptoKeys/k",
    ):
        with pytest.raises(ConfigError):
            kms_from_url(bad)
