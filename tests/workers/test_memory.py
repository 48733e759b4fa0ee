"""A worker's resident memory under a burst of maximum-size messages stays under the bound the
README documents: VAULT_STORE_WORKER_MAX_HELD_BYTES bounds what it holds, whatever the prefetch."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

from tests.workers.conftest import EnvFactory
from tests.workers.harness import Workers, enqueue, producer_app, queued, row_count, wait_for
from vault_store.catalog import Catalog
from vault_store.core.message import MAX_MESSAGE_BYTES, build_message

MIB = 1024 * 1024
BURST = 24
BUDGET = 64 * MIB
# README (Workers, Memory): resident memory stays under BASE + FACTOR x (the budget plus one
# largest message).
BASE_MIB = 300
FACTOR = 4


def largest_messages(count: int) -> list[bytes]:
    """`count` messages of one replay each, as close to the 15 MiB limit as they can be, with an
    uncompressed, incompressible rrweb body (so nothing shrinks on the way in)."""
    event = b'{"type":5,"timestamp":1,"data":{"tag":"blob","payload":"%s"}}'
    room = MAX_MESSAGE_BYTES - 4096
    chunk = 1024 * 1024
    payload = base64.b64encode(os.urandom(chunk * 3 // 4))
    events = [event % payload for _ in range(room // (len(payload) + 64))]
    body = b"[" + b",".join(events) + b"]"
    built = [
        build_message(
            project_id=9, replay_id=f"{n + 1:032x}", segment_id=0, body=body, compress=False
        )
        for n in range(count)
    ]
    assert all(MAX_MESSAGE_BYTES - 2 * chunk < len(raw) <= MAX_MESSAGE_BYTES for raw in built)
    return built


def resident_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in MiB, from /proc."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


def test_a_burst_of_the_largest_messages_stays_under_the_memory_bound(
    rabbitmq_url: str,
    worker_catalog: Catalog,
    workers: Workers,
    worker_env: EnvFactory,
) -> None:
    # Celery's prefetch of 1,200 messages (1.2 batches of 500 per pool thread) would let the
    # worker take the whole burst, 24 x 15 MiB: only the window sized to the byte budget keeps
    # it from holding all of it.
    env = worker_env(
        rabbitmq_url,
        VAULT_STORE_WORKER_MAX_HELD_BYTES=str(BUDGET),
        VAULT_STORE_FLUSH_MAX_SEGMENTS="500",
    )
    app = producer_app(env)
    burst = largest_messages(BURST)
    enqueue(app, burst)
    del burst
    worker = workers.start(env)
    peak = 0.0
    deadline = time.monotonic() + 120
    while row_count(worker_catalog) < BURST:
        assert worker.alive(), worker.output()[-4000:]
        assert time.monotonic() < deadline, worker.output()[-4000:]
        peak = max(peak, resident_mib(worker.process.pid)[1])
        time.sleep(0.05)
    peak = max(peak, resident_mib(worker.process.pid)[1])
    wait_for(lambda: queued(app, "ingest") == 0, timeout=30, what="an empty queue")
    bound = BASE_MIB + FACTOR * (BUDGET + MAX_MESSAGE_BYTES) / MIB
    print(f"peak resident {peak:.0f} MiB, bound {bound:.0f} MiB, burst {BURST * 15} MiB")
    assert peak <= bound, f"peak resident {peak:.0f} MiB over the bound of {bound:.0f} MiB"
    assert row_count(worker_catalog) == BURST  # every message stored once


def test_the_window_holds_half_the_budget_in_mean_sized_messages() -> None:
    from workers.tasks import IngestWindow

    window = IngestWindow(1000, cap=300)
    window.GROWTH = 4  # the steps below are counted with 4
    assert window.aim() == 1  # no size seen: the largest message allowed, so one at a time
    assert window.plan() and window.begin() == 1
    assert window.take(10) == 1 and window.aim() == 50  # 500 bytes over a mean of 10
    assert window.plan() and window.begin() == 3  # grows 4 times at most: 4 less the one held
    assert window.take(10) == 2 and window.plan()  # reach 4, aim 50: grows again
    assert window.begin() == 14  # 16 less the two held
    window.give_back(10, 1)  # the first consumer's message: not in the current one's count
    assert window.count == 1 and window.take(10) == 3 and window.press_at() is None
    for _ in range(13):
        window.take(10)
    assert window.press_at() is None  # 15 held, all it may come to, but it grows instead
    assert window.plan() and window.begin() == 35  # the aim, 50, less the 15 held
    assert not window.plan()  # at its aim
    for _ in range(22):
        window.take(10)
    assert window.press_at() == 37  # 3/4 of the 50 it may come to: commit once that many are staged


def test_the_window_shrinks_when_messages_grow_and_waits_for_room() -> None:
    from workers.tasks import IngestWindow

    window = IngestWindow(1000, cap=300)
    window.plan(), window.begin()
    for _ in range(3):
        window.take(5)
        window.plan(), window.begin()
    assert window.window > 10
    generation = window.take(400)  # the mean jumps: 100 bytes over about 100
    assert generation is not None and window.aim() < window.window
    assert window.plan() and window.begin() == 0  # held more than the aim: no consumer
    assert window.press_at() == 1  # so what is staged is committed now
    window.give_back(400, generation)
    assert window.plan() and window.begin() > 0  # room again


def test_the_budget_pauses_at_once_and_resumes_under_half() -> None:
    from workers.tasks import IngestWindow

    window = IngestWindow(100, cap=300)
    window.plan(), window.begin()
    generation = window.take(250)  # one message larger than the budget still goes through
    assert generation is not None and window.paused and window.window == 0
    assert window.take(1) is None  # then nothing more until it is settled
    assert not window.plan() or window.held <= 50
    window.give_back(250, generation)
    assert window.plan() and window.begin() == 1 and not window.paused
    assert window.peak == 250


def test_a_reconnect_lets_go_of_what_the_lost_connection_buffered() -> None:
    """Messages Batches buffered but had not handed on when the connection was lost are freed
    when the consumer starts again (the broker delivers them again): kept, they stayed in the
    window with no flush timer left to hand them on, and a window they nearly filled never
    opened again (the worker stopped consuming after a RabbitMQ restart)."""
    from types import SimpleNamespace

    from vault_store.settings import Settings
    from workers.app import create_app
    from workers.tasks import INGEST_TASK

    app = create_app(Settings.from_env({"VAULT_STORE_BROKER_URL": "memory://"}))
    task = app.tasks[INGEST_TASK]
    window = task.window()
    timers: list[float] = []
    consumer = SimpleNamespace(
        pool=SimpleNamespace(apply_async=None),
        hostname="test@host",
        connection_errors=(),
        event_dispatcher=None,
        initial_prefetch_count=100,
        task_consumer=None,
        timer=SimpleNamespace(call_repeatedly=lambda seconds, fun: timers.append(seconds)),
    )
    task.Strategy(task, app, consumer)
    window._goal = window.cap  # as `plan` sets it before a consumer begins
    window.begin()
    for _ in range(90):  # delivered on the first connection, still in Batches' buffer
        generation = window.take(100)
        message = SimpleNamespace(body=b"x" * 100)
        task._taken[id(message)] = generation
        task._buffer.put(SimpleNamespace(message=message))
    assert window.count == 90 and window.held == 9000

    task.Strategy(task, app, consumer)  # the connection was lost; the consumer starts again

    assert task._buffer.empty() and not task._taken
    assert window.count == 0 and window.held == 0
    assert window.plan() and window.begin() > 0  # so the ingest queue is consumed again
