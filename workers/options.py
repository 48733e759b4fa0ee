"""Our defaults for the options of `celery worker` and `celery beat` (imports no Celery)."""

from __future__ import annotations

from typing import Any


def with_defaults(given: list[str], defaults: dict[str, str]) -> list[str]:
    """Our defaults ("--name|-n": value) for the Celery options the caller did not pass."""
    chosen: list[str] = []
    for option, value in defaults.items():
        names = option.split("|")
        if not any(arg == n or arg.startswith(n + "=") for arg in given for n in names):
            chosen += [names[0], value]
    return chosen


def run_worker(app: Any, args: list[str]) -> None:
    """`celery worker` on `app` (a workers.app.create_app app) with our defaults for the options
    `args` does not set."""
    from vault_store.errors import ConfigError
    from workers.broker import REDIS_INGEST_REFUSED, is_redis
    from workers.tasks import INGEST_QUEUE, TASKS_QUEUE

    policy = app.vault_store_settings.workers
    ingest = policy.queue(INGEST_QUEUE)
    redis = is_redis(policy.broker_url)
    # On Redis the workers serve the tasks queue only (see workers.broker).
    queues = policy.queue(TASKS_QUEUE) if redis else f"{ingest},{policy.queue(TASKS_QUEUE)}"
    defaults = {
        "--pool|-P": "threads",
        "--concurrency|-c": "2",
        "--queues|-Q": queues,
        "--loglevel|-l": "INFO",
    }
    chosen = [*with_defaults(args, defaults), *args]
    if redis and any(ingest in arg for arg in chosen):
        raise ConfigError(REDIS_INGEST_REFUSED)
    app.worker_main(["worker", *chosen])
