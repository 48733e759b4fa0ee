"""`vault-store worker`, `beat`, `enqueue` and `dead-letters`, registered as CLI entry points.

Celery is imported only when a command runs, so `--help` works without the workers extra and a
missing extra is reported as such (exit 2).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from vault_store.cli.common import emit_json, reporting_errors, show_progress, stderr, stdout
from vault_store.core.message import split_stream
from vault_store.errors import BackendUnavailable, InvalidInput
from vault_store.extras import import_extra
from vault_store.settings import Settings

_PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def _app() -> Any:
    app = import_extra("workers.app", extra="workers", feature="the Celery workers")
    return app.create_app(Settings.from_env())


def _help(context: click.Context, command: str) -> bool:
    """`--help` for a Celery passthrough command: ours, then Celery's own options. Printed
    before the app is built, so help needs no broker URL (or any other setting)."""
    args = list(context.args)
    if "--help" not in args and "-h" not in args:
        return False
    with reporting_errors(as_json=False):
        celery = import_extra("celery", extra="workers", feature="the Celery workers")
    click.echo(context.get_help())
    click.echo()
    # A bare app: Celery's help lists the options without connecting anywhere.
    bare = celery.Celery("vault_store", set_as_current=False)
    bare.start([command, "--help"])  # prints and exits (0) like click's --help
    return True


@contextmanager
def _broker_errors(app: Any, op: str) -> Iterator[None]:
    """A broker that refuses or cannot be reached is one line naming it, not a traceback."""
    from workers.broker import broker_errors

    with broker_errors(app.vault_store_settings.workers.broker_url, op):
        yield


@click.command(context_settings=_PASSTHROUGH)
@click.pass_context
def worker(context: click.Context) -> None:
    """Run a Celery worker (ingest and tasks queues); other options go to `celery worker`.

    Defaults: --pool threads --concurrency 2 --queues <prefix>.ingest,<prefix>.tasks
    --loglevel INFO. `vault-store worker --help` shows Celery's own options too.
    """
    from workers.options import run_worker

    if _help(context, "worker"):
        return
    with reporting_errors(as_json=False):
        run_worker(_app(), list(context.args))


@click.command(context_settings=_PASSTHROUGH)
@click.pass_context
def beat(context: click.Context) -> None:
    """Run Celery beat: gc, expire and overwrite on their intervals; options go to `celery beat`.

    Intervals: VAULT_STORE_GC_INTERVAL, VAULT_STORE_EXPIRE_INTERVAL and
    VAULT_STORE_OVERWRITE_INTERVAL (seconds). Run exactly one beat per deployment.
    """
    from workers.options import with_defaults

    if _help(context, "beat"):
        return
    with reporting_errors(as_json=False):
        app = _app()
        home = app.vault_store_settings.home
        home.mkdir(parents=True, exist_ok=True)
        args = with_defaults(
            list(context.args),
            {"--schedule|-s": str(home / "celerybeat-schedule"), "--loglevel|-l": "INFO"},
        ) + list(context.args)
        app.start(["beat", *args])


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def enqueue(paths: tuple[Path, ...], as_json: bool) -> None:
    """Send the msgpack messages in PATHS to the ingest queue (workers validate them)."""
    from rich.progress import Progress

    with reporting_errors(as_json=as_json):
        app = _app()  # first: it reports a missing workers extra
    from workers.app import send_ingest
    from workers.tasks import INGEST_QUEUE

    messages = sent_bytes = 0
    with (
        reporting_errors(as_json=as_json),
        _confirmed_so_far(lambda: messages),
        _broker_errors(app, "publish"),
    ):
        started = time.monotonic()
        with (
            Progress(console=stderr, transient=True, disable=not show_progress()) as progress,
            app.producer_or_acquire() as producer,
        ):
            task = progress.add_task("enqueueing", total=len(paths))
            for path in paths:
                for raw in split_stream(_read(path), source=str(path)):
                    send_ingest(app, raw, producer=producer)
                    messages += 1
                    sent_bytes += len(raw)
                progress.advance(task)
    summary = {
        "files": len(paths),
        "messages": messages,
        "bytes": sent_bytes,
        "queue": app.vault_store_settings.workers.queue(INGEST_QUEUE),
        "seconds": round(time.monotonic() - started, 3),
    }
    if as_json:
        emit_json(summary)
    else:
        stdout.print(
            f"enqueued {messages:,} message(s), {sent_bytes:,} bytes to {summary['queue']}"
        )


@click.command("dead-letters")
@click.option("--requeue", is_flag=True, help="Send every dead letter back to the ingest queue.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def dead_letters(requeue: bool, as_json: bool) -> None:
    """List the dead-letter queue (reasons and counts), or requeue its messages."""
    with reporting_errors(as_json=as_json):
        app = _app()  # first: it reports a missing workers extra
    from workers.dead_letters import drain

    with reporting_errors(as_json=as_json), _broker_errors(app, "drain"):
        letters = drain(app, requeue=requeue)
    reasons: dict[str, int] = {}
    for letter in letters:
        reasons[letter.reason] = reasons.get(letter.reason, 0) + 1
    if as_json:
        emit_json({"dead_letters": len(letters), "requeued": requeue, "reasons": reasons})
        return
    verb = "requeued" if requeue else "in the queue"
    stdout.print(f"{len(letters)} dead letter(s) {verb}")
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        stdout.print(f"  {count:>8,}  {reason}", markup=False)


@contextmanager
def _confirmed_so_far(count: Callable[[], int]) -> Iterator[None]:
    """A publish the broker refused: say how many messages before it were confirmed (each send
    returns only once the broker took the message, so those are queued and the rest are not)."""
    try:
        yield
    except BackendUnavailable as exc:
        said = str(exc).removeprefix(f"{exc.backend} {exc.op}: ")
        raise BackendUnavailable(
            f"{said}; {count():,} message(s) were confirmed before it, the rest were not sent",
            backend=exc.backend,
            op=exc.op,
        ) from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(str(path), exc.strerror or "unreadable") from None
