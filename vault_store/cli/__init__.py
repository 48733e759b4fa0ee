"""The `vault-store` command line."""

from __future__ import annotations

from importlib.metadata import entry_points

import click

from vault_store.cli.audit import audit
from vault_store.cli.bench import bench
from vault_store.cli.catalog import catalog
from vault_store.cli.common import EXIT_CODES_HELP
from vault_store.cli.delete import delete, deletion, expire, gc, overwrite
from vault_store.cli.demo import demo
from vault_store.cli.gcs import gcs
from vault_store.cli.ingest import ingest
from vault_store.cli.keys import keys
from vault_store.cli.read import read
from vault_store.cli.serve import serve, token
from vault_store.cli.stats import migrate, stats


@click.group(epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vault-store")
def main() -> None:
    """Store session-replay recordings packed and sealed; delete them for real.

    Configured by VAULT_STORE_* environment variables (see the README); by default everything
    lives in ./.vault-store (SQLite catalog, blob directory, local key file).
    """


for command in (
    demo,
    ingest,
    read,
    stats,
    migrate,
    delete,
    deletion,
    overwrite,
    gc,
    expire,
    audit,
    serve,
    token,
    bench,
    keys,
    gcs,
    catalog,
):
    main.add_command(command)

# Commands of the top-level packages (the workers' `worker`, `beat`, `enqueue`, `dead-letters`)
# come in through entry points: the library never imports those packages by name.
for point in entry_points(group="vault_store.commands"):
    main.add_command(point.load(), point.name)
