"""Hand a recorded deletion to the workers: what `vault-store delete --async` calls through the
`vault_store.handoff` entry point, so the library never imports Celery or this package."""

from __future__ import annotations

from kombu.exceptions import OperationalError

from vault_store.errors import BackendUnavailable
from vault_store.settings import Settings
from workers.app import create_app
from workers.tasks import RESUME_DELETION_TASK


def hand_over_deletion(settings: Settings, deletion_id: str) -> None:
    """Queue `deletion_id` for a worker to run; BackendUnavailable if the broker refuses."""
    try:
        create_app(settings).send_task(RESUME_DELETION_TASK, args=[deletion_id])
    except (OperationalError, ConnectionError) as exc:
        raise BackendUnavailable(type(exc).__name__, backend="broker", op="send") from None
