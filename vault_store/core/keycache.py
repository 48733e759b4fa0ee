"""In-memory LRU of plaintext data keys with a time-to-live and a use cap, evictable by replay."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from vault_store.core.policies import KeyCachePolicy

V = TypeVar("V")

# The defaults are the policy's, written once there.
_DEFAULTS = KeyCachePolicy()


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V
    expires_at: float
    uses_left: int
    owner: tuple[int, str]


class KeyCache(Generic[V]):
    """Key material by a caller-chosen lookup key, each tagged with its (project, replay) owner.

    A key leaves the cache when its time-to-live passes, after `max_uses` hits, when the cache is
    full (least recently used first), or when its replay or project is evicted after a shred.
    """

    def __init__(
        self,
        *,
        ttl_seconds: float = _DEFAULTS.ttl_seconds,
        max_uses: int = _DEFAULTS.max_uses,
        max_entries: int = _DEFAULTS.max_entries,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_seconds <= 0 or max_uses < 1 or max_entries < 1:
            raise ValueError("ttl_seconds, max_uses and max_entries must be positive")
        self._ttl = ttl_seconds
        self._max_uses = max_uses
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry[V]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @classmethod
    def from_policy(cls, policy: KeyCachePolicy) -> KeyCache[V]:
        """A cache with the policy's time-to-live, use cap and size."""
        return cls(
            ttl_seconds=policy.ttl_seconds,
            max_uses=policy.max_uses,
            max_entries=policy.max_entries,
        )

    def get(self, lookup: Hashable) -> V | None:
        """The cached key, counting one use, or None."""
        with self._lock:
            entry = self._entries.get(lookup)
            if entry is None or entry.expires_at <= self._clock() or entry.uses_left <= 0:
                if entry is not None:
                    del self._entries[lookup]
                self.misses += 1
                return None
            entry.uses_left -= 1
            self._entries.move_to_end(lookup)
            self.hits += 1
            return entry.value

    def put(self, lookup: Hashable, value: V, *, owner: tuple[int, str]) -> None:
        """Cache `value` for (project_id, replay_id) `owner`."""
        with self._lock:
            self._entries[lookup] = _Entry(value, self._clock() + self._ttl, self._max_uses, owner)
            self._entries.move_to_end(lookup)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def get_or_load(self, lookup: Hashable, owner: tuple[int, str], load: Callable[[], V]) -> V:
        """The cached value, or `load()` cached under `owner`."""
        value = self.get(lookup)
        if value is None:
            value = load()
            self.put(lookup, value, owner=owner)
        return value

    def evict_replay(self, project_id: int, replay_id: str) -> int:
        """Drop every key of one replay; returns how many went."""
        return self._evict(lambda owner: owner == (project_id, replay_id))

    def evict_project(self, project_id: int) -> int:
        """Drop every key of one project; returns how many went."""
        return self._evict(lambda owner: owner[0] == project_id)

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _evict(self, matches: Callable[[tuple[int, str]], bool]) -> int:
        with self._lock:
            doomed = [lookup for lookup, entry in self._entries.items() if matches(entry.owner)]
            for lookup in doomed:
                del self._entries[lookup]
        return len(doomed)
