"""Hand a recorded deletion to the workers: what `vault-store delete --async` calls through the
`vault_store.handoff` entry point, so the library never imports Celery or this package."""

from __future__ import annotations

from vault_store.errors import BackendUnavailable, ConfigError
from vault_store.settings import Settings
from workers.app import create_app
from workers.broker import broker_errors
from workers.tasks import RESUME_DELETION_TASK


def hand_over_deletion(settings: Settings, deletion_id: str) -> None:
    """Queue `deletion_id` for a worker to run; BackendUnavailable (or ConfigError, for refused
    credentials) naming the broker if it does not take it."""
    app = create_app(settings)
    try:
        with broker_errors(settings.workers.broker_url or "", "send"):
            app.send_task(RESUME_DELETION_TASK, args=[deletion_id])
    except ConfigError as exc:  # the deletion is recorded: the CLI says how to run it anyway
        raise BackendUnavailable(str(exc), backend="broker", op="send") from None
