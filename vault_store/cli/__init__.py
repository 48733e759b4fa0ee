"""The `vault-store` command line."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

import click

from vault_store.cli.audit import audit
from vault_store.cli.bench import bench
from vault_store.cli.catalog import catalog
from vault_store.cli.common import EXIT_CODES_HELP
from vault_store.cli.delete import delete, deletion, expire, gc, overwrite
from vault_store.cli.demo import demo
from vault_store.cli.gcs import gcs
from vault_store.cli.ingest import ingest
from vault_store.cli.init import init
from vault_store.cli.keys import keys
from vault_store.cli.read import read
from vault_store.cli.serve import serve, token
from vault_store.cli.stats import migrate, stats


class _Main(click.Group):
    """The command group, plus the commands other packages register as entry points (the
    workers' `worker`, `beat`, `enqueue`, `dead-letters`): the library never imports those
    packages by name, and loads them only when the command list or one of them is asked for."""

    def _plugins(self) -> dict[str, EntryPoint]:
        return {point.name: point for point in entry_points(group="vault_store.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and (point := self._plugins().get(cmd_name)) is not None:
            loaded: click.Command = point.load()
            return loaded
        return command


@click.group(
    cls=_Main,
    epilog=EXIT_CODES_HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="vault-store")
def main() -> None:
    """Store session-replay recordings packed and sealed; delete them for real.

    Configured by VAULT_STORE_* environment variables (see the README); by default everything
    lives in ./.vault-store (SQLite catalog, blob directory, local key file).
    """


for command in (
    init,
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
