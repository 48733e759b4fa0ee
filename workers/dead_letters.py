"""Reading the dead-letter queue: list its letters (put back unchanged) or requeue them."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery

from workers.app import send_ingest
from workers.tasks import DEAD_LETTER_TASK


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One parked message and why it was parked."""

    raw: object
    reason: str
    failed_at: float


def drain(app: Celery, *, requeue: bool, timeout: float = 1.0) -> list[DeadLetter]:
    """Every letter in the queue; with `requeue` each goes back to the ingest queue, otherwise
    back to the dead-letter queue. Each is acknowledged only after it was sent on."""
    queue_name = app.conf.task_routes[DEAD_LETTER_TASK]["queue"]
    letters: list[DeadLetter] = []
    with app.connection_for_write() as connection:
        # The app's declaration of the queue (a quorum queue on RabbitMQ), not a plain one the
        # broker would refuse as a mismatch.
        declared = app.amqp.queues[queue_name]
        queue = connection.SimpleQueue(declared, no_ack=False, accept=["msgpack"])
        held = []
        try:
            while True:
                try:
                    message = queue.get(timeout=timeout)
                except queue.Empty:
                    break
                body = message.decode()
                args = list(body[0]) if isinstance(body, list) and body else []
                raw, reason, failed_at = [*args, None, "unknown", 0.0][:3]
                letters.append(DeadLetter(raw, str(reason), float(failed_at or 0.0)))
                held.append(message)
            for letter in letters:
                if requeue and isinstance(letter.raw, bytes):
                    send_ingest(app, letter.raw)
                else:
                    app.send_task(
                        DEAD_LETTER_TASK, args=[letter.raw, letter.reason, letter.failed_at]
                    )
            for message in held:
                message.ack()
        finally:
            queue.close()
    return letters
