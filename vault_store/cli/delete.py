"""`vault-store delete ...`, `deletion ...`, `overwrite`, `gc`, `expire`: deleting for real."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta

import click

from vault_store.catalog.records import DeletionStatus, Scope, Status
from vault_store.cli.common import (
    EXIT_NOT_FOUND,
    EXIT_SHREDDED,
    PROJECT_ID,
    RowProgress,
    StepBar,
    emit_json,
    open_vault,
    reporting_errors,
    stderr,
    stdout,
    table_or_json,
)
from vault_store.core.message import validate_replay_id
from vault_store.errors import BackendUnavailable
from vault_store.extras import plugin
from vault_store.settings import Settings


def _common(function: Callable[..., None]) -> Callable[..., None]:
    options = (
        click.option("--json", "as_json", is_flag=True, help="Print the deletion as JSON."),
        click.option(
            "--async",
            "queue_only",
            is_flag=True,
            help="Only record the deletion (reads stop at once) and, when "
            "VAULT_STORE_BROKER_URL is set, hand it to the workers; otherwise run it later "
            "with `vault-store deletion resume ID`.",
        ),
        click.option("--reason", required=True, help="Why (kept in the audit trail)."),
        click.option(
            "--by", "requested_by", required=True, help="Who asked (kept in the audit trail)."
        ),
        click.option("--project", type=PROJECT_ID, required=True, help="Project id."),
    )
    for option in options:
        function = option(function)
    return function


@click.group()
def delete() -> None:
    """Delete a replay, a user's replays or a project by destroying their keys (crypto-shred)."""


@delete.command("replay")
@_common
@click.option("--replay", required=True, help="Replay id: 32 lowercase hex characters.")
@click.option("--overwrite", is_flag=True, help="Also zero the ciphertext in the shared blobs.")
def delete_replay(
    project: int,
    requested_by: str,
    reason: str,
    queue_only: bool,
    as_json: bool,
    replay: str,
    overwrite: bool,
) -> None:
    """Shred one replay; with --overwrite also null-overwrite its bytes in place."""
    with reporting_errors(as_json=as_json), open_vault() as vault:
        status = vault.shred(
            Scope.REPLAY,
            project,
            requested_by=requested_by,
            reason=reason,
            replay_id=validate_replay_id(replay, "--replay"),
            overwrite=overwrite,
            run=not queue_only,
        )
    handed = _hand_over(status.id) if queue_only and not status.status.final else None
    _show(status, as_json=as_json, handed_over=handed, unknown_exits=True)


@delete.command("user")
@_common
@click.option("--user", required=True, help="The user's id, email or username in replay events.")
def delete_user(
    project: int, requested_by: str, reason: str, queue_only: bool, as_json: bool, user: str
) -> None:
    """Shred every replay of a user, found through the keyed subject index."""
    with reporting_errors(as_json=as_json), open_vault() as vault:
        status = vault.shred(
            Scope.USER,
            project,
            requested_by=requested_by,
            reason=reason,
            user=user,
            run=not queue_only,
        )
    _show(
        status,
        as_json=as_json,
        handed_over=_hand_over(status.id) if queue_only and not status.status.final else None,
    )


@delete.command("project")
@_common
def delete_project(
    project: int, requested_by: str, reason: str, queue_only: bool, as_json: bool
) -> None:
    """Shred a whole project, in chunks, with progress; resumable with `deletion resume`."""
    with (
        reporting_errors(as_json=as_json),
        open_vault() as vault,
        RowProgress("shredding", vault.project_rows(project)) as advance,
    ):
        status = vault.shred(
            Scope.PROJECT,
            project,
            requested_by=requested_by,
            reason=reason,
            run=not queue_only,
            progress=advance,
        )
    _show(
        status,
        as_json=as_json,
        handed_over=_hand_over(status.id) if queue_only and not status.status.final else None,
    )


@click.group()
def deletion() -> None:
    """Inspect or continue recorded deletions."""


@deletion.command("status")
@click.argument("deletion_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def deletion_status(deletion_id: str, as_json: bool) -> None:
    """Show a deletion's status and counts."""
    with reporting_errors(as_json=as_json), open_vault(read_only=True) as vault:
        status = vault.deletion_status(deletion_id)
    _show(status, as_json=as_json)


@deletion.command("resume")
@click.argument("deletion_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def deletion_resume(deletion_id: str, as_json: bool) -> None:
    """Run a queued or interrupted deletion to the end (safe to repeat)."""
    with (
        reporting_errors(as_json=as_json),
        open_vault() as vault,
        RowProgress("shredding", None) as advance,
    ):
        status = vault.resume_deletion(deletion_id, progress=advance)
    _show(status, as_json=as_json)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def overwrite(as_json: bool) -> None:
    """Zero every pending overwrite range (blobs rewritten with a generation precondition)."""
    with (
        reporting_errors(as_json=as_json),
        open_vault() as vault,
        StepBar(enabled=not as_json) as progress,
    ):
        result = vault.run_overwrites(progress=progress)
    table_or_json(asdict(result), "overwrite", as_json=as_json)


@click.command()
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option(
    "--grace",
    type=click.IntRange(min=0),
    default=3600,
    show_default=True,
    help="Seconds before an orphan intent may go.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def gc(dry_run: bool, grace: int, as_json: bool) -> None:
    """Delete orphans (blobs this catalog announced whose rows never came, older than --grace)
    and fully dead blobs; nothing the catalog has no record of."""
    with (
        reporting_errors(as_json=as_json),
        open_vault() as vault,
        StepBar(enabled=not as_json) as progress,
    ):
        result = vault.collect_garbage(
            grace=timedelta(seconds=grace), dry_run=dry_run, progress=progress
        )
    document = asdict(result)
    if as_json:
        emit_json(document)
        return
    verb = "would delete" if dry_run else "deleted"
    stdout.print(
        f"gc {verb} {len(result.orphans)} orphan and {len(result.dead)} dead blob(s), "
        f"{result.bytes_freed:,} bytes"
    )
    for path in [*result.orphans, *result.dead]:
        stdout.print(f"  {path}", markup=False)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def expire(as_json: bool) -> None:
    """Delete rows, then blobs (from any store, GCS included), past their retention."""
    with (
        reporting_errors(as_json=as_json),
        open_vault() as vault,
        StepBar(enabled=not as_json) as progress,
    ):
        result = vault.expire(progress=progress)
    table_or_json(asdict(result), "retention", as_json=as_json)


def _show(
    status: DeletionStatus,
    *,
    as_json: bool,
    handed_over: bool | None = None,
    unknown_exits: bool = False,
) -> None:
    """Print the deletion; for a request that found nothing, say so (and with `unknown_exits`,
    a replay deletion, exit like `read`: 3 never stored, 4 already deleted)."""
    document = status.as_dict()
    if handed_over is not None:
        document["handed_to_workers"] = handed_over
    table_or_json(document, f"deletion {status.id}", as_json=as_json)
    if status.status is not Status.NOTHING_HELD:
        return
    if not as_json:
        stderr.print(_nothing_held(status), markup=False)
    if unknown_exits:
        sys.exit(EXIT_SHREDDED if status.previous_deletion_id else EXIT_NOT_FOUND)


def _nothing_held(status: DeletionStatus) -> str:
    if status.previous_deletion_id:
        return (
            f"nothing held: already deleted by deletion {status.previous_deletion_id}; "
            f"this request is recorded as {status.id}"
        )
    return f"nothing held: no data of this {status.scope.value} is stored; request recorded"


def _hand_over(deletion_id: str) -> bool:
    """Send a recorded (--async) deletion to the workers when a broker is configured.

    The deletion is already durable: if the broker cannot take it, say so and leave it for
    `vault-store deletion resume`, rather than fail a request that has taken effect. The workers
    package is reached through its entry point, so the library never imports Celery.
    """
    settings = Settings.from_env()
    if not settings.workers.broker_url:
        return False
    hand_over = plugin(
        "vault_store.handoff", "deletion", extra="workers", feature="delete --async with a broker"
    )
    try:
        hand_over(settings, deletion_id)
    except BackendUnavailable as exc:
        stderr.print(
            f"deletion {deletion_id} is recorded but the broker did not take it "
            f"({exc}); run: vault-store deletion resume {deletion_id}",
            markup=False,
        )
        return False
    return True
