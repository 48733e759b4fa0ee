"""Helpers for end-to-end tests: recordings as Sentry messages, and reading replays back."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from vault_store import Vault
from vault_store.message import build_message
from vault_store.rrweb import Event, segment_bodies
from vault_store.samples import Recording


@dataclass(frozen=True)
class SentReplay:
    """A recording sent under a project and replay id, as the segments its messages carry."""

    name: str
    project_id: int
    replay_id: str
    events: list[Event]
    bodies: list[bytes]


def as_replays(recordings: list[Recording], *, projects: int = 2) -> list[SentReplay]:
    """Each recording as one replay with a fresh id."""
    return [
        SentReplay(r.name, 1 + n % projects, uuid.uuid4().hex, r.events, segment_bodies(r.events))
        for n, r in enumerate(recordings)
    ]


def messages_for(
    replays: list[SentReplay], *, seed: int = 0, duplicate_fraction: float = 0.0
) -> list[bytes]:
    """Every segment as a message (zlib and raw JSON bodies alternate), shuffled, some twice."""
    generator = random.Random(seed)
    messages = [
        build_message(
            project_id=replay.project_id,
            replay_id=replay.replay_id,
            segment_id=segment_id,
            body=body,
            compress=segment_id % 2 == 0,
        )
        for replay in replays
        for segment_id, body in enumerate(replay.bodies)
    ]
    messages += generator.sample(messages, int(len(messages) * duplicate_fraction))
    generator.shuffle(messages)
    return messages


def read_events(vault: Vault, project_id: int, replay_id: str) -> list[Any]:
    """The merged recording as parsed JSON: one list of events per segment."""
    document = orjson.loads(b"".join(vault.read_recording(project_id, replay_id)))
    assert isinstance(document, list)
    return document
