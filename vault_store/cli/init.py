"""`vault-store init`: migrate the catalog and make the local key file for a new store."""

from __future__ import annotations

import click

from vault_store.cli.common import emit_json, reporting_errors, stdout
from vault_store.settings import Settings
from vault_store.vault import Vault


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def init(as_json: bool) -> None:
    """Set up a store: migrate the catalog; create the local key file only if the catalog
    holds no wrapped key yet; check the KMS holds every key the catalog needs.

    Safe to repeat. A missing key file of a catalog that has data is a configuration error
    (exit 2) naming the path: restore it, never replace it.
    """
    with reporting_errors(as_json=as_json):
        primary = Vault.initialize(Settings.from_env())
    if as_json:
        emit_json({"primary_kek": primary})
        return
    stdout.print(f"ready; primary key: {primary}", markup=False)
