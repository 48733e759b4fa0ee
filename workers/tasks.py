"""The worker's tasks: module-level functions, each one facade call, bound to an app by `register`.

A task reaches its Vault through `runtime()`, which `workers.app.create_app` configures. Each pool
thread builds its own Vault on its first task, so none exists at import and none is inherited
across a fork (the prefork pool forks before any task runs). Every task but ingest retries only
on BackendUnavailable, with exponential backoff and jitter, and returns a small summary.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from celery import Celery, Task
from celery_batches import Batches, SimpleRequest, apply_batches_task, consume_queue

from vault_store import Scope
from vault_store.core.message import MAX_MESSAGE_BYTES
from vault_store.errors import BackendUnavailable
from vault_store.settings import Settings, WorkerPolicy
from vault_store.vault import Vault
from workers import metrics
from workers.ingest import Delivery, Stage, send_back_unsettled

_log = logging.getLogger(__name__)

# Short queue names; WorkerPolicy.queue gives the full "<prefix>.<name>".
INGEST_QUEUE = "ingest"
TASKS_QUEUE = "tasks"
DEAD_LETTER_QUEUE = "dead_letter"
QUEUES = (INGEST_QUEUE, TASKS_QUEUE, DEAD_LETTER_QUEUE)

INGEST_TASK = "vault_store.ingest"
DEAD_LETTER_TASK = "vault_store.dead_letter"
SHRED_REPLAY_TASK = "vault_store.shred_replay"
SHRED_USER_TASK = "vault_store.shred_user"
SHRED_PROJECT_TASK = "vault_store.shred_project"
RESUME_DELETION_TASK = "vault_store.resume_deletion"
OVERWRITE_TASK = "vault_store.overwrite_ranges"
GC_TASK = "vault_store.gc"
EXPIRE_TASK = "vault_store.expire"
MAINTAIN_TASK = "vault_store.catalog_maintain"
COMPACT_TASK = "vault_store.compact"

# How often messages received are handed to the pool to be staged (sealed as they arrive),
# and how often a batch's age is looked at.
STAGE_INTERVAL = 0.25

# Chunks of rows a deletion slice deletes between looks at the clock.
SLICE_CHUNKS = 1

# Retry settings of the non-ingest tasks: only a transient backend failure is worth another go.
_RETRYING: dict[str, Any] = {
    "autoretry_for": (BackendUnavailable,),
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 10,
}


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A task as `register` binds it: its name, its short queue name and Celery options."""

    name: str
    queue: str
    function: Callable[..., Any]
    options: dict[str, Any] = field(default_factory=dict)


TASKS: list[TaskSpec] = []

_Function = TypeVar("_Function", bound=Callable[..., Any])


def _task(name: str, *, queue: str, **options: Any) -> Callable[[_Function], _Function]:
    """Record a module-level function as a task (bound to an app later, by `register`)."""

    def record(function: _Function) -> _Function:
        TASKS.append(TaskSpec(name, queue, function, options))
        return function

    return record


def register(
    app: Celery, policy: WorkerPolicy, *, options: dict[str, dict[str, Any]] | None = None
) -> None:
    """Bind every task to `app` on its queue; `options` adds per-task Celery options by name."""
    for spec in TASKS:
        extra = (options or {}).get(spec.name, {})
        app.task(name=spec.name, queue=policy.queue(spec.queue), **spec.options, **extra)(
            spec.function
        )


def routes(policy: WorkerPolicy) -> dict[str, dict[str, str]]:
    """Celery's task routes: every task name to its full queue name."""
    return {spec.name: {"queue": policy.queue(spec.queue)} for spec in TASKS}


class Runtime:
    """What this process's tasks run with: the app, the settings and one Vault per pool thread
    (a Vault's buffers are not shared between threads)."""

    def __init__(self, app: Celery, settings: Settings, factory: Callable[[Settings], Vault]):
        self.app = app
        self.settings = settings
        self.outbox = CeleryOutbox(app)
        self._factory = factory
        self._local = threading.local()
        self._all: list[Vault] = []
        self._lock = threading.Lock()
        self._stage: Stage | None = None
        self._stage_lock = threading.Lock()

    def vault(self) -> Vault:
        """The calling thread's Vault, built on its first use."""
        vault: Vault | None = getattr(self._local, "vault", None)
        if vault is None:
            vault = self._factory(self.settings)
            self._local.vault = vault
            with self._lock:
                self._all.append(vault)
        return vault

    def stage(self) -> tuple[Stage, threading.Lock]:
        """This process's ingest stage (one Vault whose buffer holds the batch being built,
        whichever pool thread adds to it) and the lock every use of it holds."""
        with self._lock:
            if self._stage is None:
                vault = self._factory(self.settings)
                self._all.append(vault)
                self._stage = Stage(vault, self.outbox, policy=self.settings.workers)
            return self._stage, self._stage_lock

    def close(self) -> None:
        """Close every Vault built so far."""
        with self._lock:
            vaults, self._all = self._all, []
        for vault in vaults:
            vault.close()


_runtime: Runtime | None = None


def configure(app: Celery, settings: Settings, factory: Callable[[Settings], Vault]) -> None:
    """Make `app` and `settings` what this process's tasks run with (builds no Vault)."""
    global _runtime  # the one holder a module-level task can reach
    if _runtime is not None:
        _runtime.close()
    _runtime = Runtime(app, settings, factory)


def runtime() -> Runtime:
    """This process's runtime, as `configure` left it."""
    if _runtime is None:
        raise RuntimeError("tasks run only in an app made by workers.app.create_app")
    return _runtime


def start_metrics(**_: object) -> None:
    """Serve the metrics once the worker is ready, when a port is configured."""
    policy = runtime().settings.workers
    if policy.metrics_port is not None:
        metrics.serve(policy.metrics_port, policy.metrics_address)


def close_vaults(**_: object) -> None:
    """Release this process's Vaults when the worker shuts down."""
    runtime().close()


class CeleryOutbox:
    """Requeues and dead letters as new messages on the broker (sent before the batch is acked,
    so a crash in between leaves a duplicate, never a loss)."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    def requeue(self, delivery: Delivery) -> None:
        """Send the message back to the ingest queue with its attempt count raised."""
        self._app.send_task(
            INGEST_TASK,
            args=[delivery.raw],
            kwargs={"attempt": delivery.attempt + 1, "enqueued_at": delivery.enqueued_at},
        )

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Park the message in the dead-letter queue with the reason."""
        self._app.send_task(DEAD_LETTER_TASK, args=[delivery.raw, reason, time.time()])


class IngestWindow:
    """How many ingest messages a worker process lets the broker send it: a prefetch window sized
    to the byte budget (VAULT_STORE_WORKER_MAX_HELD_BYTES), and the budget as the hard stop.

    RabbitMQ's prefetch is a count of messages (it ignores a prefetch in bytes) and, on quorum
    queues, a count per consumer fixed when the consumer starts: a basic.qos on a live consumer
    changes nothing. So the window aims at half the budget over the mean size of the messages
    seen so far (before the first, the largest a message may be), at most Celery's prefetch count;
    when the consumer's window is off that aim by half, the consumer thread cancels the ingest
    consumer and consumes again with a new count (`plan`, then `begin`). A cancel gives nothing
    back: messages delivered before it stay held and are acknowledged as usual. A new consumer's
    count does not cover what its predecessors delivered, so it gets the aim less what is held.
    Half the budget leaves room for a run of messages larger than the mean.

    The consumer thread takes each message (`take`); the thread that settles a batch gives its
    bytes back (`give_back`). A message that brings the held bytes to the budget (only possible
    when sizes jump within one window) cancels the consumer at once: messages still on their way
    go back to the queue, and consuming resumes once under half. At least one message is always
    taken, so a message larger than the budget still goes through.
    """

    # The window grows at most this many times over at a time (every ADJUST seconds): a few small
    # first messages do not open it to thousands of larger ones before their sizes are seen, and
    # it opens within a few tenths of a second (8, 128, 2,048 at the default budget).
    GROWTH = 16
    ADJUST = 0.05
    # The mean size follows the last few thousand messages (an average of all, up to that many).
    MEMORY = 2048

    def __init__(self, budget: int, cap: int) -> None:
        self.budget = budget
        self.cap = max(1, cap)
        self.held = 0  # bytes of the messages held
        self.count = 0  # messages held
        self.peak = 0
        self.paused = False  # at the budget: not consuming until under half
        self.window = 0  # the ingest consumer's prefetch count (0: not consuming)
        self.restarts = 0
        self._generation = 0  # one per ingest consumer
        self._current = 0  # messages held that the current consumer delivered
        self._goal = 0
        self._seen = 0
        self._mean = 0.0
        self._lock = threading.Lock()

    def aim(self) -> int:
        """The messages to hold: half the budget over the mean size, at least 1, at most the cap."""
        size = self._mean or MAX_MESSAGE_BYTES
        return max(1, min(self.cap, int(self.budget / 2 / size)))

    def take(self, size: int) -> int | None:
        """Hold a message of `size` bytes; its consumer's generation (for `give_back`), or None
        (send it back) while paused at the budget."""
        with self._lock:
            if self.paused:
                return None
            self.held += size
            self.count += 1
            self._current += 1
            self.peak = max(self.peak, self.held)
            self._seen += 1
            self._mean += (size - self._mean) / min(self._seen, self.MEMORY)
            if self.held >= self.budget:
                self.paused, self.window = True, 0
            return self._generation

    def give_back(self, size: int, generation: int) -> None:
        """A settled message's bytes."""
        with self._lock:
            self.held -= size
            self.count -= 1
            if generation == self._generation:
                self._current -= 1

    def press_at(self) -> int | None:
        """How many staged messages (sealed, waiting for their commit) make the batch worth
        committing now: 1 when paused or stopped for want of room; three quarters of what the
        consumer may bring the held messages to when the window is at its aim (the last quarter
        streams in while the batch is written); None while it is still growing. Messages held
        but not yet staged do not count: committing early frees the window only of staged ones.
        """
        with self._lock:
            if self.paused or self.window == 0:
                return 1
            reach = self.count - self._current + self.window
            if reach * 3 <= self.aim() * 2:  # `plan` grows a window under two thirds of its aim
                return None
            return max(1, reach * 3 // 4)

    def plan(self) -> bool:
        """Whether the ingest consumer should be started again (with `begin`'s count): it is off
        its aim by half, or stopped with room for a quarter of the aim. In the consumer thread."""
        with self._lock:
            aim = self.aim()
            if self.window == 0:
                if self.paused and self.held > self.budget // 2:
                    return False
                self._goal = aim
                return aim - self.count >= max(1, aim // 4)
            reach = self.count - self._current + self.window  # the most it may come to hold
            goal = min(aim, self.GROWTH * reach)
            if goal * 2 < reach * 3 and reach * 2 <= aim * 3:
                return False  # within half of its aim either way
            self._goal = goal
            return True

    def begin(self) -> int:
        """The count for a new ingest consumer, once the last one is cancelled (0: do not
        consume yet). Messages held so far count against it."""
        with self._lock:
            self.restarts += 1
            self._generation += 1
            self._current = 0
            room = self._goal - self.count
            self.paused = self.paused and room < 1
            self.window = room if room >= 1 and not self.paused else 0
            return self.window

    def stop(self) -> None:
        """The ingest consumer is gone (cancelled, or its connection lost): none consumes."""
        with self._lock:
            self._generation += 1
            self._current = 0
            self.window = 0


class ReconnectingBatches(Batches):  # type: ignore[misc]  # celery-batches is untyped
    """celery-batches that keeps flushing after a reconnect and holds a bounded number of bytes.

    Batches starts its flush timer on the first message and remembers it, but a consumer that
    lost its broker connection clears its timers when it restarts: the remembered timer never
    fires again, and a batch short of VAULT_STORE_FLUSH_MAX_SEGMENTS then waits, unacknowledged,
    until the worker dies. Celery builds each task's strategy anew on every consumer start, so
    forgetting the timer there makes the next message start a fresh one; the messages still
    buffered from the lost connection are let go of there too (the broker delivers them again).

    The ingest queue is consumed with a prefetch window sized to `max_held_bytes` (see
    IngestWindow): Celery's own consumer starts without it, and the consumer thread starts,
    resizes and stops the ingest consumer on a timer. A batch is committed early when the window
    is nearly full of staged messages, so the broker keeps sending while it is written.
    """

    max_held_bytes: int = 256 * 1024 * 1024
    # A batch is committed once it has flush_every messages or its first is this old.
    batch_age: float = 10.0
    _window: IngestWindow | None = None
    _consumes: bool | None = None

    def __init__(self) -> None:
        super().__init__()
        self._waiting: dict[str, tuple[Any, int, int]] = {}
        self._taken: dict[int, int] = {}  # id(message) -> its consumer's generation
        self._waiting_lock = threading.Lock()
        self._ticking = False

    def window(self) -> IngestWindow:
        """This process's window (one per task instance, kept across reconnects)."""
        if self._window is None:
            self._window = IngestWindow(self.max_held_bytes, 1)
        return self._window

    def Strategy(self, task: Any, app: Celery, consumer: Any) -> Any:  # Celery's name
        self._tref = None
        self._let_go_of_buffered()
        handle = super().Strategy(task, app, consumer)
        window = self.window()
        # Celery's prefetch count (multiplier x pool size) is the most the window may open to
        # (Celery lowers it for a while after a reconnect: the first count is kept).
        window.cap = max(window.cap, consumer.initial_prefetch_count)
        queue = str(self.queue)
        # Celery consumes its queues at the count it chose; the ingest queue is left to `adjust`,
        # which consumes it at the window's count (also after a reconnect, which rebuilds the
        # consumer from the selected queues).
        if self._consumes is None:  # whether this worker was told to consume the ingest queue
            self._consumes = queue in app.amqp.queues.consume_from
        window.stop()
        app.amqp.queues.deselect(queue)

        def adjust() -> None:
            if consumer.task_consumer is None or not window.plan():
                return
            if consumer.task_consumer.consuming_from(queue):
                consumer.task_consumer.cancel_by_queue(queue)  # delivers what is on its way
            count = window.begin()
            _log.debug("ingest prefetch window: %d messages, %d held", count, window.count)
            if count:
                consumer.task_consumer.qos(prefetch_count=count, apply_global=False)
                consumer.add_task_queue(queue)

        # The consumer is changed in its own thread (kombu channels are not thread-safe).
        if self._consumes:  # a worker on Redis serves the tasks queue only
            consumer.timer.call_repeatedly(window.ADJUST, adjust)
        consumer.timer.call_repeatedly(STAGE_INTERVAL, self.tick)

        def on_message(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any):  # type: ignore[no-untyped-def]
            generation = window.take(len(message.body))
            if generation is None:
                message.reject(requeue=True)  # on its way past the budget: back to the queue
                return
            self._taken[id(message)] = generation
            handle(message, body, ack, reject, callbacks, **kw)
            if window.paused:
                self._do_flush()  # the held messages become a batch now, not at its age
                if consumer.task_consumer.consuming_from(queue):
                    consumer.task_consumer.cancel_by_queue(queue)

        return on_message

    def _let_go_of_buffered(self) -> None:
        """Free the messages a lost connection delivered that Batches had not yet handed on.

        They cannot be acknowledged on a new channel, and the broker delivers them again. Kept,
        they would stay in the window's count with no flush timer left to hand them on, and a
        window they nearly fill would never open again (the worker would stop consuming).
        """
        window = self.window()
        let_go = 0
        for request in consume_queue(self._buffer):  # as Batches drains it to flush
            message = request.message
            window.give_back(len(message.body), self._taken.pop(id(message), -1))
            let_go += 1
        if let_go:
            _log.info(
                "%d ingest messages of the lost connection are left to be delivered again", let_go
            )

    def flush(self, requests: Any) -> Any:
        """Hand the requests to the pool to be staged; acknowledge, and free the bytes of, only
        the messages each run reports settled (a staged message is settled by the commit of its
        batch, in this run or a later one)."""
        with self._waiting_lock:
            for request in requests:
                message = request.message
                generation = self._taken.pop(id(message), -1)
                self._waiting[_key(request)] = (request, len(message.body), generation)
        return self._run([SimpleRequest.from_request(r) for r in requests])

    def tick(self) -> None:
        """Run the ingest task on no new message, so a batch is committed at its age even when
        nothing more arrives (in the consumer's thread, every STAGE_INTERVAL)."""
        with self._waiting_lock:
            if not self._waiting or self._ticking:
                return
            self._ticking = True
        self._run([], tick=True)

    def _run(self, requests: list[Any], *, tick: bool = False) -> Any:
        window = self.window()

        def on_return(result: Any) -> None:
            settled = result.get("settled", []) if isinstance(result, dict) else []
            with self._waiting_lock:
                if tick:
                    self._ticking = False
                done = [self._waiting.pop(key, None) for key in settled]
            for entry in done:
                if entry is None:
                    continue
                request, size, generation = entry
                try:
                    request.acknowledge()
                finally:  # an acknowledgement lost with the connection still frees the bytes
                    window.give_back(size, generation)

        # When to commit early is decided here, in the consumer's process (a prefork child has no
        # window of its own).
        return self._pool.apply_async(
            apply_batches_task,
            (self, (requests, window.press_at()), 0, None),
            callback=on_return,
        )


def _key(request: Any) -> str:
    """One broker delivery: its task id and delivery tag (a redelivery has another tag)."""
    return f"{request.id}/{(request.delivery_info or {}).get('delivery_tag')}"


# -- the tasks ------------------------------------------------------------------------------


@_task(INGEST_TASK, queue=INGEST_QUEUE, base=ReconnectingBatches, acks_late=True)
def ingest(requests: list[SimpleRequest], press_at: int | None = None) -> dict[str, Any]:
    """Stage messages as they arrive (parse, admit, seal); commit the batch once it is due, or
    once `press_at` messages are staged (the consumer's window is nearly full of them).

    Returns the deliveries settled by this run (`settled`: their keys), the only ones the
    consumer acknowledges.
    """
    worker = runtime()
    task = worker.app.tasks[INGEST_TASK]
    deliveries = [_delivery(request) for request in requests]
    stage, lock = worker.stage()
    summary: dict[str, Any] = {}
    with lock:
        try:
            settled = stage.add(deliveries)
            pressed = press_at is not None and stage.staged >= max(1, press_at)
            if pressed or stage.due(max_segments=task.flush_every, max_age=task.batch_age):
                outcome, committed = stage.commit()
                settled += committed
                summary = asdict(outcome)
        except BaseException as error:
            _log.error("ingest batch failed: %s; its messages go back", type(error).__name__)
            staged = stage.abandon(error)
            send_back_unsettled(deliveries, worker.outbox, error, policy=stage.policy)
            settled = staged + deliveries
            if not isinstance(error, Exception):
                raise
    return {**summary, "settled": [delivery.key for delivery in settled]}


@_task(DEAD_LETTER_TASK, queue=DEAD_LETTER_QUEUE, acks_late=True)
def dead_letter(raw: object, reason: str, failed_at: float) -> None:
    """Workers do not consume the dead-letter queue; one told to puts the letter back, so it is
    never lost (`vault-store dead-letters` lists and requeues them)."""
    runtime().app.send_task(DEAD_LETTER_TASK, args=[raw, reason, failed_at])


@_task(SHRED_REPLAY_TASK, queue=TASKS_QUEUE, bind=True, **_RETRYING)
def shred_replay(
    task: Task,
    project_id: int,
    replay_id: str,
    requested_by: str,
    reason: str,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Delete one replay (idempotent under retries: the task id is the deletion id)."""
    return _shred(
        task, Scope.REPLAY, project_id, requested_by, reason, overwrite, replay_id=replay_id
    )


@_task(SHRED_USER_TASK, queue=TASKS_QUEUE, bind=True, **_RETRYING)
def shred_user(
    task: Task,
    project_id: int,
    user: str,
    requested_by: str,
    reason: str,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Delete every replay of a user of one project."""
    return _shred(task, Scope.USER, project_id, requested_by, reason, overwrite, user=user)


@_task(SHRED_PROJECT_TASK, queue=TASKS_QUEUE, bind=True, **_RETRYING)
def shred_project(
    task: Task, project_id: int, requested_by: str, reason: str, overwrite: bool = False
) -> dict[str, Any]:
    """Delete a whole project, in resumable chunks."""
    return _shred(task, Scope.PROJECT, project_id, requested_by, reason, overwrite)


@_task(RESUME_DELETION_TASK, queue=TASKS_QUEUE, **_RETRYING)
def resume_deletion(deletion_id: str) -> dict[str, Any]:
    """Run a recorded deletion (`delete --async`, or a slice's continuation) for one slice."""
    return _run_slice(deletion_id)


@_task(OVERWRITE_TASK, queue=TASKS_QUEUE, **_RETRYING)
def overwrite_ranges() -> dict[str, Any]:
    """Zero every pending overwrite range (forced overwrites)."""
    return asdict(runtime().vault().run_overwrites())


@_task(GC_TASK, queue=TASKS_QUEUE, **_RETRYING)
def gc() -> dict[str, Any]:
    """Delete orphan and fully dead blobs."""
    return asdict(runtime().vault().collect_garbage())


@_task(EXPIRE_TASK, queue=TASKS_QUEUE, **_RETRYING)
def expire() -> dict[str, Any]:
    """Expire rows (and, on the local store, blobs) past their retention."""
    return asdict(runtime().vault().expire())


@_task(MAINTAIN_TASK, queue=TASKS_QUEUE, **_RETRYING)
def catalog_maintain() -> dict[str, Any]:
    """Create partitions ahead and drop fully expired ones; warn of what the server lacks."""
    report = runtime().vault().maintain_catalog()
    for warning in report.warnings:
        _log.warning("catalog maintenance: %s", warning)
    return asdict(report)


@_task(COMPACT_TASK, queue=TASKS_QUEUE, **_RETRYING)
def compact() -> dict[str, Any]:
    """Copy finished replays into compacted blobs (the sources go at the next gc)."""
    vault = runtime().vault()
    result = vault.compact()
    metrics.record_compaction(result, vault.compaction_stats(), vault.stats().dead_bytes)
    return asdict(result)


def _shred(
    task: Task,
    scope: Scope,
    project_id: int,
    requested_by: str,
    reason: str,
    overwrite: bool,
    **target: str,
) -> dict[str, Any]:
    """One shred task's body: record the deletion under the task's own id, then run a slice."""
    status = (
        runtime()
        .vault()
        .shred(
            scope,
            project_id,
            requested_by=requested_by,
            reason=reason,
            overwrite=overwrite,
            deletion_id=_deletion_id(task),
            run=False,
            **target,  # type: ignore[arg-type]
        )
    )
    return _run_slice(status.id)


def _run_slice(deletion_id: str) -> dict[str, Any]:
    """Work on a deletion for at most VAULT_STORE_DELETION_SLICE seconds (a chunk of rows at a
    time), then, if it is not finished, queue its continuation and return.

    A delivery is acknowledged when its task returns, and a broker redelivers one held longer
    than its own timeout (RabbitMQ's consumer_timeout, 30 min by default and set broker-wide
    before RabbitMQ 3.12; Redis's visibility timeout): no slice lasts that long, so a deletion is
    never delivered again while it runs. The continuation is sent (and, on RabbitMQ, confirmed)
    before this delivery is acknowledged, so a crash in between leaves a duplicate continuation,
    which resumes the same deletion, never a lost one.
    """
    worker = runtime()
    vault = worker.vault()
    deadline = time.monotonic() + worker.settings.workers.deletion_slice_seconds
    while True:
        status = vault.resume_deletion(deletion_id, max_chunks=SLICE_CHUNKS)
        if status.status.final:
            return status.as_dict()
        if time.monotonic() >= deadline:
            worker.app.send_task(RESUME_DELETION_TASK, args=[deletion_id])
            return {**status.as_dict(), "continued": True}


def _deletion_id(task: Task) -> str:
    # Celery keeps the task id across retries: the same deletion resumes, not a second one.
    return uuid.UUID(str(task.request.id)).hex


def _delivery(request: SimpleRequest) -> Delivery:
    raw = request.args[0] if request.args else None
    kwargs = request.kwargs or {}
    attempt = kwargs.get("attempt", 0)
    enqueued_at = kwargs.get("enqueued_at")
    return Delivery(
        raw=raw,
        attempt=attempt if isinstance(attempt, int) else 0,
        enqueued_at=float(enqueued_at) if isinstance(enqueued_at, int | float) else None,
        key=_key(request),
    )
