"""`vault-store serve` as a real process on 127.0.0.1, spoken to over real HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

from tests.integration.helpers import run
from tests.peers.gcs import free_port
from vault_store.core.message import build_message

REPLAY = "0123456789abcdef0123456789abcdef"


def test_serve_answers_over_http(home: dict[str, str], tmp_path: Path) -> None:
    messages = tmp_path / "m.msgpack"
    messages.write_bytes(
        b"".join(
            build_message(project_id=9, replay_id=REPLAY, segment_id=n, body=b"[%d]" % n)
            for n in range(5)
        )
    )
    assert run(home, "ingest", str(messages)).returncode == 0
    made = run(
        home,
        "token",
        "create",
        "--project",
        "9",
        "--scope",
        "read,delete",
        "--label",
        "e2e",
        "--json",
    )
    token = json.loads(made.stdout)["token"]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "vault_store", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        auth = {"Authorization": f"Bearer {token}"}
        reply = httpx.get(
            f"{base}/v1/projects/9/replays/{REPLAY}/recording", headers=auth, timeout=10
        )
        assert reply.status_code == 200 and orjson.loads(reply.content) == [[0], [1], [2], [3], [4]]
        assert (
            httpx.get(f"{base}/v1/projects/9/replays/{REPLAY}/recording", timeout=10).status_code
            == 401
        )
        deleted = httpx.delete(f"{base}/v1/projects/9/replays/{REPLAY}", headers=auth, timeout=10)
        assert deleted.status_code == 202
        assert (
            httpx.get(
                f"{base}/v1/projects/9/replays/{REPLAY}/recording", headers=auth, timeout=10
            ).status_code
            == 410
        )
        token_id = json.loads(made.stdout)["id"]
        assert run(home, "token", "revoke", token_id).returncode == 0
        assert (
            httpx.get(
                f"{base}/v1/projects/9/replays/{REPLAY}/segments", headers=auth, timeout=10
            ).status_code
            == 401
        )
        assert run(home, "token", "revoke", token_id).returncode == 2
        listed = json.loads(run(home, "token", "list", "--json").stdout)
        assert listed == [
            {
                "id": token_id,
                "label": "e2e",
                "projects": [9],
                "scopes": ["delete", "read"],
                "revoked": True,
            }
        ]
        assert token.split("_", 2)[2] not in run(home, "token", "list").stdout.decode()
    finally:
        server.terminate()
        server.wait(timeout=15)
