"""The data-key cache (TTL, use cap, LRU, eviction by replay) and settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from vault_store.core.crypto import DataKey
from vault_store.core.keycache import KeyCache
from vault_store.errors import ConfigError
from vault_store.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_their_ttl() -> None:
    clock = Clock()
    cache: KeyCache[DataKey] = KeyCache(ttl_seconds=10, clock=clock)
    key = DataKey.generate()
    cache.put("k", key, owner=(1, "r"))
    clock.now = 9.9
    assert cache.get("k") is key
    clock.now = 10
    assert cache.get("k") is None


def test_entries_leave_after_max_uses() -> None:
    cache: KeyCache[DataKey] = KeyCache(max_uses=2)
    cache.put("k", DataKey.generate(), owner=(1, "r"))
    assert cache.get("k") is not None
    assert cache.get("k") is not None
    assert cache.get("k") is None


def test_least_recently_used_goes_first() -> None:
    cache: KeyCache[int] = KeyCache(max_entries=2)
    cache.put("a", 1, owner=(1, "a"))
    cache.put("b", 2, owner=(1, "b"))
    cache.get("a")
    cache.put("c", 3, owner=(1, "c"))
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)


def test_evict_by_replay_and_by_project() -> None:
    cache: KeyCache[int] = KeyCache()
    cache.put("a1", 1, owner=(1, "a"))
    cache.put("a2", 2, owner=(1, "a"))
    cache.put("b", 3, owner=(1, "b"))
    cache.put("c", 4, owner=(2, "a"))
    assert cache.evict_replay(1, "a") == 2
    assert cache.get("a1") is None and cache.get("b") == 3
    assert cache.evict_project(1) == 1
    assert len(cache) == 1 and cache.get("c") == 4


def test_get_or_load_loads_once() -> None:
    cache: KeyCache[int] = KeyCache()
    loads: list[int] = []

    def load() -> int:
        loads.append(1)
        return 7

    for _ in range(3):
        cache.get_or_load("k", (1, "r"), load)
    assert loads == [1]
    assert (cache.hits, cache.misses) == (2, 1)


def test_embedded_defaults_live_under_home(tmp_path: Path) -> None:
    settings = Settings.from_env({"VAULT_STORE_HOME": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path}/catalog.sqlite3"
    assert settings.blob_url == f"file://{tmp_path}/blobs"
    assert settings.kms_url == f"local-kms://{tmp_path}/kek.json"
    assert settings.flush.max_bytes == 8 * 1024 * 1024
    assert settings.flush.max_segments == 5000
    assert settings.flush.max_age_seconds == 10.0
    assert settings.zstd_level == 3


def test_environment_overrides() -> None:
    settings = Settings.from_env(
        {
            "VAULT_STORE_DATABASE_URL": "postgresql://x@h/db",
            "VAULT_STORE_FLUSH_MAX_BYTES": "1024",
            "VAULT_STORE_FLUSH_MAX_SEGMENTS": "10",
            "VAULT_STORE_FLUSH_MAX_AGE": "0.5",
            "VAULT_STORE_ZSTD_LEVEL": "9",
            "VAULT_STORE_AUTO_MIGRATE": "false",
        }
    )
    assert settings.database_url == "postgresql://x@h/db"
    assert (settings.flush.max_bytes, settings.flush.max_segments) == (1024, 10)
    assert settings.flush.max_age_seconds == 0.5
    assert settings.zstd_level == 9
    assert settings.auto_migrate is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VAULT_STORE_FLUSH_MAX_BYTES", "lots"),
        ("VAULT_STORE_FLUSH_MAX_SEGMENTS", "-1"),
        ("VAULT_STORE_ZSTD_LEVEL", "30"),
        ("VAULT_STORE_AUTO_MIGRATE", "maybe"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})
