"""End to end on the Google Cloud backends, as real processes: gs:// blobs on gcp-storage-emulator,
gcp-kms:// keys on the Cloud KMS peer. Ingest, read, shred, rotate, rewrap, read again."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import orjson
import pytest

from tests.integration.helpers import run
from tests.peers.gcs import BUCKET, FaultProxy
from tests.peers.kms_server import KEY_NAME, KmsServer
from vault_store.blobstore.gcs import GcsBlobStore
from vault_store.core.message import build_message

REPLAY = "0123456789abcdef0123456789abcdef"
OTHER = "f" * 32
BY = ("--by", "dpo@example.com", "--reason", "GDPR art. 17")


@pytest.fixture
def cloud(home: dict[str, str], gcs_proxy: FaultProxy, kms_server: KmsServer) -> dict[str, str]:
    """The CLI's environment on gs:// and gcp-kms:// URLs, each test under its own prefix."""
    return {
        **home,
        "STORAGE_EMULATOR_HOST": gcs_proxy.url,
        "VAULT_STORE_BLOB_URL": f"gs://{BUCKET}/e2e-{uuid.uuid4().hex}",
        "VAULT_STORE_KMS_URL": f"gcp-kms://{KEY_NAME}",
        "VAULT_STORE_KMS_ENDPOINT": kms_server.endpoint,
    }


def ingest(env: dict[str, str], tmp_path: Path) -> None:
    stream = tmp_path / "messages.msgpack"
    stream.write_bytes(
        b"".join(
            build_message(
                project_id=3,
                replay_id=replay,
                segment_id=n,
                body=b"[%d]" % n,
                replay_event=b'{"user": {"email": "ada@example.com"}}' if n == 0 else None,
            )
            for replay in (REPLAY, OTHER)
            for n in range(3)
        )
    )
    result = run(env, "ingest", str(stream), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["blobs_written"] == 1


def read(env: dict[str, str], replay: str) -> object:
    result = run(env, "read", "--project", "3", "--replay", replay)
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout)


def test_ingest_read_shred_rotate_rewrap_read(
    cloud: dict[str, str], kms_server: KmsServer, tmp_path: Path
) -> None:
    ingest(cloud, tmp_path)
    assert read(cloud, REPLAY) == [[0], [1], [2]]
    assert kms_server.state.calls("decrypt"), "keys were unwrapped by Cloud KMS"

    shred = run(
        cloud,
        "delete",
        "replay",
        "--project",
        "3",
        "--replay",
        REPLAY,
        "--overwrite",
        *BY,
        "--json",
    )
    assert shred.returncode == 0, shred.stderr
    assert json.loads(shred.stdout)["overwrite_done_at"] is not None
    assert run(cloud, "read", "--project", "3", "--replay", REPLAY).returncode == 4

    old = kms_server.state.version_name(1)
    new = kms_server.state.rotate()
    status = json.loads(run(cloud, "keys", "status", "--json").stdout)
    assert status["primary"] == new
    assert status["rows_by_kek"] == {old: 3 + 1}  # OTHER's rows and the subject key

    rewrapped = run(cloud, "keys", "rewrap", "--json")
    assert rewrapped.returncode == 0, rewrapped.stderr
    result = json.loads(rewrapped.stdout)
    assert (result["rows_updated"], result["secrets_rewrapped"]) == (3, 1)
    assert json.loads(run(cloud, "keys", "status", "--json").stdout)["rows_by_kek"] == {new: 4}

    kms_server.state.set_state(1, "DESTROYED")
    assert read(cloud, OTHER) == [[0], [1], [2]]
    user = run(
        cloud, "delete", "user", "--project", "3", "--user", "ada@example.com", *BY, "--json"
    )
    assert user.returncode == 0, user.stderr
    assert json.loads(user.stdout)["replays_deleted"] == 1  # OTHER; REPLAY was already gone
    verify = run(cloud, "audit", "verify", "--json")
    assert verify.returncode == 0, verify.stdout


def test_a_destroyed_version_before_rewrap_is_an_integrity_failure(
    cloud: dict[str, str], kms_server: KmsServer, tmp_path: Path
) -> None:
    ingest(cloud, tmp_path)
    kms_server.state.rotate()
    kms_server.state.set_state(1, "DESTROYED")
    result = run(cloud, "read", "--project", "3", "--replay", OTHER)
    assert result.returncode == 5
    assert b"destroyed or disabled" in result.stderr


def test_lifecycle_rules_are_printed_then_applied_keeping_other_rules(
    cloud: dict[str, str], gcs_proxy: FaultProxy, tmp_path: Path
) -> None:
    ingest(cloud, tmp_path)
    prefix = cloud["VAULT_STORE_BLOB_URL"].split("/", 3)[3] + "/"
    store = GcsBlobStore(BUCKET, prefix)
    store.bucket.reload()
    store.bucket.lifecycle_rules = [
        {"action": {"type": "Delete"}, "condition": {"age": 400, "matchesPrefix": ["logs/"]}}
    ]
    store.bucket.patch()

    printed = run(cloud, "gcs", "lifecycle", "--days", "60", "--json")
    assert printed.returncode == 0, printed.stderr
    document = json.loads(printed.stdout)
    assert document["applied"] is False
    conditions = [rule["condition"] for rule in document["rules"]]
    # 30 and 90 by default, 60 asked for; the message's default class is in the catalog too.
    assert {c["daysSinceCustomTime"] for c in conditions} >= {31, 61, 91}
    assert {"matchesPrefix": [f"{prefix}r60d/"], "daysSinceCustomTime": 61} in conditions
    store.bucket.reload()
    assert len(list(store.bucket.lifecycle_rules)) == 1  # a dry run changed nothing

    applied = run(cloud, "gcs", "lifecycle", "--apply", "--json")
    assert applied.returncode == 0, applied.stderr
    store.bucket.reload()
    rules = [dict(rule) for rule in store.bucket.lifecycle_rules]
    assert rules[0]["condition"] == {"age": 400, "matchesPrefix": ["logs/"]}
    ours = [rule for rule in rules[1:] if rule["action"] == {"type": "Delete"}]
    assert {r["condition"]["daysSinceCustomTime"] for r in ours} >= {31, 91}
    # Applying again replaces our rules instead of piling them up.
    run(cloud, "gcs", "lifecycle", "--apply")
    store.bucket.reload()
    assert len(list(store.bucket.lifecycle_rules)) == len(rules)


def test_lifecycle_needs_a_gcs_store(home: dict[str, str]) -> None:
    result = run(home, "gcs", "lifecycle")
    assert result.returncode == 2
    assert b"gs://" in result.stderr
