"""The layout holds: the core is pure, the package exports load lazily, extras are optional."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import vault_store

ROOT = Path(__file__).resolve().parents[2]
CORE_MODULES = sorted(
    f"vault_store.core.{path.stem}"
    for path in (ROOT / "vault_store" / "core").glob("*.py")
    if path.stem != "__init__"
)
# What the core and the bare library must not drag in when imported.
HEAVY = frozenset(
    {"sqlalchemy", "psycopg2", "alembic", "google", "grpc", "requests", "fastapi", "starlette"}
    | {"uvicorn", "celery", "kombu", "prometheus_client", "workers"}
)


def _loaded_after(code: str) -> set[str]:
    """Top-level packages in sys.modules after running `code` in a fresh interpreter."""
    script = (
        code
        + "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, cwd=ROOT
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_the_core_package_is_found_and_has_its_modules() -> None:
    assert {
        "vault_store.core.crypto",
        "vault_store.core.message",
        "vault_store.core.packer",
    } <= set(CORE_MODULES)


def test_importing_the_core_loads_no_database_network_web_or_queue_code() -> None:
    loaded = _loaded_after("".join(f"import {module}\n" for module in CORE_MODULES))
    assert "vault_store" in loaded
    assert loaded.isdisjoint(HEAVY), sorted(loaded & HEAVY)


def test_importing_the_package_loads_nothing_until_a_name_is_used() -> None:
    assert _loaded_after("import vault_store").isdisjoint(HEAVY)
    # Using a name loads only what defines it.
    assert _loaded_after("from vault_store import DataKey").isdisjoint(HEAVY)
    assert "sqlalchemy" in _loaded_after("from vault_store import Catalog")


def test_the_cli_loads_no_optional_extra_to_start() -> None:
    loaded = _loaded_after("import vault_store.cli")
    assert loaded.isdisjoint({"celery", "kombu", "fastapi", "uvicorn", "google", "grpc"})


def test_every_public_name_resolves_and_the_list_is_sorted() -> None:
    assert vault_store.__all__ == sorted(vault_store.__all__)
    for name in vault_store.__all__:
        assert getattr(vault_store, name) is not None
    with pytest.raises(AttributeError):
        _ = vault_store.NoSuchName


# A meta-path finder that makes the named top-level packages uninstallable, as in a bare venv.
_BLOCK = """
import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
from vault_store.cli import main
sys.argv = ["vault-store", *{argv!r}]
main()
"""


@pytest.mark.parametrize(
    ("blocked", "argv", "extra", "env"),
    [
        ({"celery", "kombu"}, ["worker"], "workers", {}),
        ({"celery", "kombu"}, ["enqueue", "x.msgpack"], "workers", {}),
        ({"fastapi", "uvicorn"}, ["serve"], "api", {}),
        (
            {"google"},
            ["ingest", "x.msgpack"],
            "gcp",
            {"VAULT_STORE_BLOB_URL": "gs://bucket/prefix"},
        ),
        (
            {"google", "grpc"},
            ["ingest", "x.msgpack"],
            "gcp",
            {"VAULT_STORE_KMS_URL": "gcp-kms://projects/p"},
        ),
    ],
)
def test_a_command_whose_extra_is_missing_names_the_extra_and_exits_2(
    tmp_path: Path, blocked: set[str], argv: list[str], extra: str, env: dict[str, str]
) -> None:
    (tmp_path / "x.msgpack").write_bytes(b"")
    script = textwrap.dedent(_BLOCK).format(blocked=sorted(blocked), argv=argv)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "VAULT_STORE_HOME": str(tmp_path / "home"),
            **env,
        },
        timeout=60,
    )
    assert result.returncode == 2, result.stderr.decode()
    assert f"vault-store[{extra}]" in result.stderr.decode()
    assert b"Traceback" not in result.stderr
