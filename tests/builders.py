"""The one set of test builders: replay ids, segments and relay messages with sane defaults."""

from __future__ import annotations

import os
from collections.abc import Iterable

import orjson

from vault_store.core.message import Segment, build_message


def replay_id(n: int) -> str:
    """The n-th test replay id (32 lowercase hex characters)."""
    return f"{n:032x}"


def replay_event(user: str | None = None, *, email: str | None = None) -> bytes | None:
    """A replay event naming `user` by id and e-mail `<user>@Example.com` (or only `email`),
    the identifiers the subject index hashes; None when neither is given."""
    if user is not None:
        return orjson.dumps({"user": {"id": user, "email": f"{user}@Example.com"}})
    if email is not None:
        return orjson.dumps({"user": {"email": email}})
    return None


def body(n: int, *, padded: bool = False) -> bytes:
    """A small valid rrweb body for segment `n`; `padded` makes it unique and harder to pack."""
    if not padded:
        return b"[%d]" % n
    return b'[{"type":3,"data":{"n":%d,"pad":"%s"}}]' % (n, os.urandom(40).hex().encode())


def segment(
    replay: str,
    n: int,
    *,
    project: int = 1,
    days: int = 30,
    content: bytes | None = None,
    user: str | None = None,
    email: str | None = None,
    padded: bool = False,
) -> Segment:
    """Segment `n` of `replay`, as parsing a message would give it."""
    return Segment(
        project_id=project,
        replay_id=replay,
        segment_id=n,
        body=body(n, padded=padded) if content is None else content,
        retention_days=days,
        replay_event=replay_event(user, email=email),
    )


def message(
    replay: str,
    n: int,
    *,
    project: int = 1,
    days: int = 90,
    content: bytes | None = None,
    email: str | None = None,
) -> bytes:
    """Segment `n` of `replay` as the relay sends it (msgpack, zlib body)."""
    return build_message(
        project_id=project,
        replay_id=replay,
        segment_id=n,
        body=body(n) if content is None else content,
        retention_days=days,
        replay_event=replay_event(email=email),
    )


def stream(
    replays: Iterable[str],
    segments: int,
    *,
    project: int = 1,
    email: str | None = None,
    email_of: str | None = None,
) -> bytes:
    """Messages for `segments` segments of each replay, concatenated as a message file; the
    replay `email_of` (every replay, if None) names the user `email` in its replay events."""
    return b"".join(
        message(
            replay,
            n,
            project=project,
            email=email if email_of in (None, replay) else None,
        )
        for replay in replays
        for n in range(segments)
    )
