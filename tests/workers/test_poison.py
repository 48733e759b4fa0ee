"""One poison message among 100 valid ones on a real worker and broker: the 100 are stored and
the one is dead-lettered with a reason naming its field, for each kind of poison the ingest
issue found (garbage, a map with an array key, a bit-flipped message, bad JSON); the deep DOM with
a console breadcrumb that used to crash sealing is now valid and stored byte for byte."""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import pytest

from tests.integration.helpers import read_events
from tests.workers.conftest import EnvFactory
from tests.workers.harness import (
    Workers,
    enqueue,
    messages,
    producer_app,
    queued,
    row_count,
    vault_over,
    wait_for,
)
from vault_store.catalog import Catalog
from vault_store.core.message import build_message, parse_message
from vault_store.errors import InvalidInput
from workers.dead_letters import drain

CRUMB = b'{"type":5,"data":{"tag":"breadcrumb","payload":{"category":"console","message":"hi"}}}'
DEEP = b'[{"type":2,"data":{"node":' + b"[" * 10_000 + b"]" * 10_000 + b"}}," + CRUMB + b"]"
DEEP_REPLAY = "de" * 16


def _bit_flipped(seed: int) -> bytes:
    """A valid message with one bit of its compressed body flipped, chosen (seeded) among the
    flips ingest refuses: a flip that still parses would not be poison."""
    body = b"[" + b",".join(b'{"type":3,"data":{"n":%d}}' % n for n in range(50)) + b"]"
    original = build_message(project_id=99, replay_id="bf" * 16, segment_id=0, body=body)
    start = original.index(zlib.compress(body))
    rng = random.Random(seed)
    while True:
        position = rng.randrange(start + 2, start + len(zlib.compress(body)))
        flipped = bytearray(original)
        flipped[position] ^= 1 << rng.randrange(8)
        try:
            parse_message(bytes(flipped))
        except InvalidInput:
            return bytes(flipped)


# kind -> (the message, the field its dead-letter reason must name)
POISON: dict[str, tuple[bytes, str]] = {
    "garbage": (random.Random(1).randbytes(300), "message"),
    "array key": (b"\x81\x91\x01\x01", "message"),  # {[1]: 1}
    "bit flip": (_bit_flipped(14), "payload.body"),
    "bad json": (
        build_message(project_id=98, replay_id="ba" * 16, segment_id=0, body=b'[{"a":1},]'),
        "payload.body",
    ),
}


def test_one_poison_message_costs_only_itself_for_every_kind(
    rabbitmq_url: str,
    worker_catalog: Catalog,
    tmp_path: Path,
    workers: Workers,
    worker_env: EnvFactory,
) -> None:
    # Typed parts on: the deep segment goes through part classification too.
    env = worker_env(rabbitmq_url, VAULT_STORE_PARTS="typed", VAULT_STORE_FLUSH_MAX_SEGMENTS="101")
    app = producer_app(env)
    stream: list[bytes] = []
    for group, (poison, _field) in enumerate(POISON.values()):
        valid = messages(4, 25, project=10 + group)  # 100 valid messages
        stream += [*valid[:50], poison, *valid[50:]]
    deep = build_message(project_id=20, replay_id=DEEP_REPLAY, segment_id=0, body=DEEP)
    stream += [*messages(4, 25, project=19)[:50], deep, *messages(4, 25, project=19)[50:]]
    enqueue(app, stream)
    worker = workers.start(env)

    valid_count = 100 * (len(POISON) + 1) + 1  # and the deep one
    wait_for(
        lambda: row_count(worker_catalog) >= valid_count,
        timeout=90,
        what=f"{valid_count} stored segments",
        workers=(worker,),
    )
    wait_for(
        lambda: queued(app, "dead_letter") == len(POISON),
        timeout=20,
        what="one dead letter per poison",
        workers=(worker,),
    )
    wait_for(lambda: queued(app, "ingest") == 0, timeout=20, what="an empty ingest queue")

    # Typed parts: the deep segment is two rows (dom and console), every other valid one is one.
    assert row_count(worker_catalog) == valid_count + 1
    reader = vault_over(worker_catalog, tmp_path)
    for group in range(len(POISON) + 1):
        for r in range(4):
            events = read_events(reader, 10 + group if group < len(POISON) else 19, f"{r + 1:032x}")
            assert events == [[{"n": n}] for n in range(25)]
    assert reader.read_segment(20, DEEP_REPLAY, 0) == DEEP

    letters = {letter.raw: letter.reason for letter in drain(app, requeue=False)}
    assert len(letters) == len(POISON)
    for kind, (poison, field) in POISON.items():
        reason = letters[poison]  # dead-lettered with its own bytes, so it can be replayed
        assert reason.startswith(f"{field}:"), (kind, reason)
        assert "Traceback" not in reason


@pytest.mark.parametrize("kind", list(POISON))
def test_each_poison_is_refused_by_parse_alone(kind: str) -> None:
    """The premise of the worker test: each poison is refused, naming its field."""
    poison, field = POISON[kind]
    with pytest.raises(InvalidInput) as refused:
        parse_message(poison)
    assert refused.value.field == field
