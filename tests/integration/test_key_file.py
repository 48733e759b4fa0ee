"""Key files that cannot be silently replaced: lost, mistyped or swapped, each is exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.integration.helpers import run
from vault_store.core.message import build_message

REPLAY = "0123456789abcdef0123456789abcdef"


def _ingest(env: dict[str, str], tmp_path: Path) -> None:
    stream = tmp_path / "in.msgpack"
    stream.write_bytes(
        b"".join(
            build_message(project_id=3, replay_id=REPLAY, segment_id=n, body=b"[%d]" % n)
            for n in range(2)
        )
    )
    result = run(env, "ingest", str(stream))
    assert result.returncode == 0, result.stderr


def test_a_lost_mistyped_or_swapped_key_file_is_a_configuration_error(
    home: dict[str, str], tmp_path: Path
) -> None:
    key_file = tmp_path / "keys" / "kek.json"
    env = {**home, "VAULT_STORE_KMS_URL": f"local-kms://{key_file}"}
    created = run(env, "init", "--json")
    assert created.returncode == 0, created.stderr
    primary = json.loads(created.stdout)["primary_kek"]
    assert key_file.exists() and primary.endswith("#v1")
    assert run(env, "init").returncode == 0  # safe to repeat
    _ingest(env, tmp_path)
    read = ["read", "--project", "3", "--replay", REPLAY]
    assert run(env, *read).returncode == 0

    saved = tmp_path / "saved.json"
    shutil.copy2(key_file, saved)
    key_file.unlink()
    for args in (read, ("init",), ("stats",)):
        lost = run(env, *args)
        assert lost.returncode == 2, (args, lost.stderr)
        assert str(key_file) in lost.stderr.decode()
        assert not key_file.exists()  # never replaced by a new key

    typo = tmp_path / "keys" / "kek.jsn"
    mistyped = run({**env, "VAULT_STORE_KMS_URL": f"local-kms://{typo}"}, *read)
    assert mistyped.returncode == 2 and str(typo) in mistyped.stderr.decode()
    assert not typo.exists()

    other = tmp_path / "other" / "kek.json"  # a new store's key file, put in its place
    assert (
        run(
            {
                **env,
                "VAULT_STORE_KMS_URL": f"local-kms://{other}",
                "VAULT_STORE_DATABASE_URL": f"sqlite:///{tmp_path / 'o.sqlite3'}",
            },
            "init",
        ).returncode
        == 0
    )
    shutil.copy2(other, key_file)
    swapped = run(env, *read)
    assert swapped.returncode == 2, swapped.stderr
    assert "different key" in swapped.stderr.decode() and str(key_file) in swapped.stderr.decode()

    shutil.copy2(saved, key_file)
    assert run(env, *read).returncode == 0  # the original restored: everything reads again
