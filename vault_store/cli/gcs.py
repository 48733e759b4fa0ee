"""`vault-store gcs lifecycle`: the bucket lifecycle rules that expire packed blobs."""

from __future__ import annotations

import click

from vault_store.cli.common import emit_json, open_vault, reporting_errors, stdout
from vault_store.services.lifecycle import DEFAULT_MARGIN_DAYS


@click.group()
def gcs() -> None:
    """Google Cloud Storage operations."""


@gcs.command("lifecycle")
@click.option(
    "--apply",
    "apply_rules",
    is_flag=True,
    help="Set the rules on the bucket (other rules on it are kept).",
)
@click.option(
    "--days",
    "extra_days",
    type=click.IntRange(1),
    multiple=True,
    help="A retention class to cover besides those in the catalog (repeatable).",
)
@click.option(
    "--margin-days",
    type=click.IntRange(0),
    default=DEFAULT_MARGIN_DAYS,
    show_default=True,
    help="Days past expiry before GCS deletes a blob.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rules as JSON.")
def gcs_lifecycle(
    apply_rules: bool, extra_days: tuple[int, ...], margin_days: int, as_json: bool
) -> None:
    """Print (or --apply) rules deleting blobs by days since custom time, per retention class."""
    with reporting_errors(as_json=as_json), open_vault() as vault:
        plan = vault.lifecycle_rules(
            extra_days=extra_days, margin_days=margin_days, apply=apply_rules
        )
    document = {"bucket": plan.bucket, "applied": plan.applied, "rules": plan.rules}
    if as_json:
        emit_json(document)
        return
    verb = "applied to" if apply_rules else "for"
    stdout.print(f"lifecycle rules {verb} gs://{plan.bucket}/{plan.prefix}", markup=False)
    for rule in plan.rules:
        condition = rule["condition"]
        stdout.print(
            f"  delete {condition['matchesPrefix'][0]}* {condition['daysSinceCustomTime']} days "
            "after custom time",
            markup=False,
        )
    if not apply_rules:
        stdout.print("(dry run: --apply sets them)")
