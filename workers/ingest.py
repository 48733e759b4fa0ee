"""Ingest messages, staged as they arrive (validate, drop deleted targets, seal), then committed
as one batch (flush), each message then settled.

Every message ends in exactly one place: durable (its blob uploaded and rows committed, so it
may be acknowledged), back on the ingest queue (its flush failed; the attempt count grows), or
in the dead-letter queue (malformed, or out of attempts) with its reason. A staged message is
acknowledged only once the commit of its batch has settled it: `Stage.add` and `Stage.commit`
return exactly the deliveries that may be acknowledged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from vault_store.core.message import Segment, parse_message
from vault_store.errors import InvalidInput, VaultError
from vault_store.settings import WorkerPolicy
from vault_store.vault import FlushResult, Vault
from workers import metrics

_log = logging.getLogger(__name__)
# Messages parsed (decompressed, scanned) and sealed together: one tombstone query per chunk.
CHUNK_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as the broker handed it over."""

    raw: object
    attempt: int = 0
    enqueued_at: float | None = None
    # Which broker delivery this is (the task id and delivery tag): what is acknowledged.
    key: str = ""


class Outbox(Protocol):
    """Where messages that are not durable go."""

    def requeue(self, delivery: Delivery) -> None:
        """Send the message back to the ingest queue with its attempt count raised."""
        ...

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Park the message in the dead-letter queue with the reason."""
        ...


@dataclass(slots=True)
class BatchOutcome:
    """How a batch's messages were settled."""

    messages: int = 0
    stored: int = 0
    duplicates: int = 0
    dropped_deleted: int = 0
    requeued: int = 0
    dead_lettered: int = 0
    blobs: list[str] = field(default_factory=list)


def ingest_batch(
    vault: Vault,
    deliveries: Sequence[Delivery],
    outbox: Outbox,
    *,
    policy: WorkerPolicy,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> BatchOutcome:
    """Make every message of the batch durable, or requeue it, or dead-letter it."""
    stage = Stage(vault, outbox, policy=policy, sleep=sleep, clock=clock)
    stage.add(deliveries)
    outcome, _ = stage.commit()
    return outcome


class Stage:
    """Messages sealed into one Vault's buffer as they arrive, made durable together.

    `add` parses, admits and seals messages (a malformed one is dead-lettered at once); `commit`
    writes what is buffered and settles every staged message: durable, sent back, or
    dead-lettered. Nothing staged may be acknowledged before the commit that settles it: `add`
    and `commit` return the deliveries that are settled, and only those.
    """

    def __init__(
        self,
        vault: Vault,
        outbox: Outbox,
        *,
        policy: WorkerPolicy,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.vault = vault
        self.outbox = outbox
        self.policy = policy
        self.sleep = sleep
        self.clock = clock
        self.staged_since: float | None = None  # time.monotonic() of the first staged message
        self._reset()

    def _reset(self) -> None:
        self.outcome = BatchOutcome()
        self.buffered: list[tuple[Delivery, tuple[int, str, int]]] = []
        self.failed: list[Delivery] = []
        self.results: list[FlushResult] = []
        self.last_error: VaultError | None = None
        self.staged_since = None

    @property
    def staged(self) -> int:
        """Messages waiting for the commit."""
        return len(self.buffered) + len(self.failed)

    def add(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Stage the messages; the ones settled already (dead-lettered, or dropped because their
        target is deleted), which may be acknowledged now."""
        if not deliveries:
            return []
        if self.staged_since is None:
            self.staged_since = time.monotonic()
        self.outcome.messages += len(deliveries)
        started = self.clock()
        for delivery in deliveries:
            if delivery.enqueued_at is not None:
                metrics.QUEUE_LAG.observe(max(0.0, started - delivery.enqueued_at))
        settled: list[Delivery] = []
        # A chunk at a time: only one chunk's decompressed bodies are alive at once (a sealed
        # segment keeps its compressed frame and its identity, not its body).
        for chunk in _chunks(deliveries):
            parsed = _parse_all(chunk, self.outbox, self.outcome)
            readable = {id(d) for d, _ in parsed}
            settled += [d for d in chunk if id(d) not in readable]  # dead-lettered
            try:
                kept = _drop_deleted(self.vault, parsed, self.outcome)
            except VaultError as error:  # the catalog is unreachable: nothing can be decided now
                _log.warning("tombstone check failed: %s", error)
                kept, self.last_error = [], error
                self.failed += [d for d, _ in parsed]
                continue
            staying = {id(d) for d, _ in kept}
            settled += [d for d, _ in parsed if id(d) not in staying]  # dropped: deleted target
            del parsed
            for delivery, segment in kept:
                self._buffer(delivery, segment)
            del kept
        return settled

    def _buffer(self, delivery: Delivery, segment: Segment) -> None:
        try:
            self.vault.buffer(segment)
        except VaultError as error:  # the KMS could not wrap a new key: nothing was buffered
            self.failed.append(delivery)
            self.last_error = error
            return
        self.buffered.append(
            (delivery, (segment.project_id, segment.replay_id, segment.segment_id))
        )
        if self.last_error is None:
            try:
                self.results += self.vault.flush_due()  # a class over its byte limit is a blob now
            except VaultError as error:  # its frames are back in the buffer for the final flush
                _log.warning("flush failed: %s", error)
                self.last_error = error

    def due(self, *, max_segments: int, max_age: float) -> bool:
        """Whether the staged messages are as many, or as old, as a batch may be."""
        if self.staged_since is None:
            return False
        old = time.monotonic() - self.staged_since >= max_age
        return old or self.staged >= max_segments

    def commit(self) -> tuple[BatchOutcome, list[Delivery]]:
        """Write what is buffered and settle every staged message; the outcome and the settled
        deliveries (every staged one)."""
        outcome, results, policy = self.outcome, self.results, self.policy
        flushed_at, final_error = _flush(self.vault, policy, self.sleep)
        results += flushed_at
        durable = {(i.project_id, i.replay_id, i.segment_id) for r in results for i in r.identities}
        failed = list(self.failed)
        for delivery, identity in self.buffered:
            if identity in durable:
                if delivery.enqueued_at is not None:
                    metrics.ENQUEUE_TO_DURABLE.observe(
                        max(0.0, self.clock() - delivery.enqueued_at)
                    )
            else:
                failed.append(delivery)
        for delivery in failed:
            _send_back(delivery, self.outbox, policy, final_error or self.last_error, outcome)
        settled = [d for d, _ in self.buffered] + list(self.failed)
        _report(outcome, results)
        self._reset()
        return outcome, settled

    def abandon(self, error: BaseException) -> list[Delivery]:
        """After an error nobody foresaw: send every staged message back (or, out of attempts,
        dead-letter it), drop the buffer; the settled deliveries (every staged one)."""
        staged = [d for d, _ in self.buffered] + list(self.failed)
        self.vault.discard_buffered()
        send_back_unsettled(staged, self.outbox, error, policy=self.policy)
        self._reset()
        return staged


def _report(outcome: BatchOutcome, results: list[FlushResult]) -> None:
    for result in results:
        outcome.stored += result.inserted
        outcome.duplicates += result.duplicates
        outcome.dropped_deleted += result.dropped_deleted
        if not result.blob_path:
            continue  # every segment was already stored: no blob was written
        outcome.blobs.append(result.blob_path)
        metrics.FLUSH_SEGMENTS.observe(result.frames)
        metrics.FLUSH_BYTES.observe(result.blob_bytes)
    metrics.SEGMENTS.labels("stored").inc(outcome.stored)
    metrics.SEGMENTS.labels("duplicate").inc(outcome.duplicates)
    metrics.SEGMENTS.labels("dropped_deleted").inc(outcome.dropped_deleted)
    _log.info(
        "batch of %d: %d stored, %d duplicates, %d dropped (deleted), %d requeued, "
        "%d dead-lettered, %d blob(s)",
        outcome.messages,
        outcome.stored,
        outcome.duplicates,
        outcome.dropped_deleted,
        outcome.requeued,
        outcome.dead_lettered,
        len(outcome.blobs),
    )


def _chunks(deliveries: Sequence[Delivery]) -> Iterator[Sequence[Delivery]]:
    """The batch in runs of at most CHUNK_BYTES of messages (at least one message each)."""
    start, size = 0, 0
    for index, delivery in enumerate(deliveries):
        length = len(delivery.raw) if isinstance(delivery.raw, bytes) else 0
        if index > start and size + length > CHUNK_BYTES:
            yield deliveries[start:index]
            start, size = index, 0
        size += length
    if start < len(deliveries):
        yield deliveries[start:]


def _parse_all(
    deliveries: Sequence[Delivery], outbox: Outbox, outcome: BatchOutcome
) -> list[tuple[Delivery, Segment]]:
    parsed = []
    for delivery in deliveries:
        if not isinstance(delivery.raw, bytes):
            _dead_letter(
                delivery, outbox, "message: expected raw msgpack bytes", "message", outcome
            )
            continue
        try:
            parsed.append((delivery, parse_message(delivery.raw)))
        except InvalidInput as error:  # names the field, never the content
            _dead_letter(delivery, outbox, str(error), error.field, outcome)
        except Exception as error:  # noqa: BLE001 (isolation: it costs this message alone)
            reason = f"message: could not be read ({type(error).__name__})"
            _dead_letter(delivery, outbox, reason, "message", outcome)
    return parsed


def _drop_deleted(
    vault: Vault, parsed: list[tuple[Delivery, Segment]], outcome: BatchOutcome
) -> list[tuple[Delivery, Segment]]:
    """Segments of deleted replays or projects never get a key: dropped, counted, audited."""
    admission = vault.admit([s for _, s in parsed], actor="vault-store worker")
    outcome.dropped_deleted += admission.dropped
    kept = {id(s) for s in admission.kept}
    return [(d, s) for d, s in parsed if id(s) in kept]


def _flush(
    vault: Vault, policy: WorkerPolicy, sleep: Callable[[float], None]
) -> tuple[list[FlushResult], VaultError | None]:
    """Write what is buffered, retrying with backoff; on giving up the buffer is emptied."""
    error: VaultError | None = None
    for attempt in range(policy.flush_retries + 1):
        started = time.monotonic()
        try:
            results = vault.flush()
        except VaultError as caught:  # messages carry ids and names only, never content
            error = caught
            _log.warning(
                "flush failed (try %d of %d): %s", attempt + 1, policy.flush_retries + 1, caught
            )
            sleep(policy.flush_retry_delay_seconds * 2**attempt)
            continue
        metrics.FLUSH_SECONDS.observe(time.monotonic() - started)
        return results, None
    # The messages go back to the queue; their frames must not linger to be written later.
    vault.discard_buffered()
    return [], error


def _send_back(
    delivery: Delivery,
    outbox: Outbox,
    policy: WorkerPolicy,
    error: VaultError | None,
    outcome: BatchOutcome,
) -> None:
    if _out_of_attempts(delivery, policy):
        reason = f"not stored after {delivery.attempt + 1} attempts: {error}"
        _dead_letter(delivery, outbox, reason, "attempts", outcome)
        return
    outbox.requeue(delivery)
    outcome.requeued += 1
    metrics.SEGMENTS.labels("requeued").inc()


def send_back_unsettled(
    deliveries: Sequence[Delivery], outbox: Outbox, error: BaseException, *, policy: WorkerPolicy
) -> None:
    """Requeue (or, out of attempts, dead-letter) every message of a batch that crashed.

    celery-batches acknowledges a batch even when its function raised, so each message is sent
    on first; duplicates of what did become durable are harmless (first write wins).
    """
    for delivery in deliveries:
        if _out_of_attempts(delivery, policy):
            outbox.dead_letter(delivery, f"worker error: {type(error).__name__}")
        else:
            outbox.requeue(delivery)


def _out_of_attempts(delivery: Delivery, policy: WorkerPolicy) -> bool:
    return delivery.attempt + 1 >= policy.max_ingest_attempts


def _dead_letter(
    delivery: Delivery, outbox: Outbox, reason: str, kind: str, outcome: BatchOutcome
) -> None:
    outbox.dead_letter(delivery, reason)
    outcome.dead_lettered += 1
    metrics.DEAD_LETTERS.labels(kind).inc()
    metrics.SEGMENTS.labels("dead_lettered").inc()
