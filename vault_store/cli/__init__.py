"""The `vault-store` command line."""

from __future__ import annotations

import os
import sys
from importlib.metadata import EntryPoint, entry_points

import click

from vault_store.cli.audit import audit
from vault_store.cli.bench import bench
from vault_store.cli.catalog import catalog
from vault_store.cli.common import EXIT_CODES_HELP, EXIT_OK
from vault_store.cli.compact import compact
from vault_store.cli.delete import delete, deletion, expire, gc, overwrite
from vault_store.cli.demo import demo
from vault_store.cli.gcs import gcs
from vault_store.cli.ingest import ingest
from vault_store.cli.init import init
from vault_store.cli.keys import keys
from vault_store.cli.read import read
from vault_store.cli.sample import sample
from vault_store.cli.serve import serve, token
from vault_store.cli.stats import migrate, stats
from vault_store.errors import ConfigError
from vault_store.settings import Settings, default_home


class _Main(click.Group):
    """The command group, plus the commands other packages register as entry points (the
    workers' `worker`, `beat`, `enqueue`, `dead-letters`): the library never imports those
    packages by name, and loads them only when the command list or one of them is asked for."""

    def _plugins(self) -> dict[str, EntryPoint]:
        return {point.name: point for point in entry_points(group="vault_store.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # The reader went away (`vault-store read ... | head`): stop quietly with 0, as
            # Unix filters do, instead of click's exit 1 and Python's "Exception ignored" at
            # exit (stdout now points at /dev/null so the final flush cannot fail again).
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            ctx.exit(EXIT_OK)

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help_text(ctx, formatter)
        # Where the store is, as this environment configures it (computed only for --help).
        try:
            home = str(Settings.from_env().home)
        except ConfigError as error:  # help must show even when a setting is wrong
            home = f"{default_home()} unless VAULT_STORE_HOME is set ({error})"
        with formatter.indentation():
            formatter.write_paragraph()
            formatter.write_text(f"Home now: {home}")

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

    Configured by VAULT_STORE_* environment variables (see the README). By default everything
    (SQLite catalog, blob directory, local key file) lives in the per-user data directory, or
    in VAULT_STORE_HOME if set. Output to a closed pipe (`read | head`) ends quietly with 0.
    """


for command in (
    init,
    demo,
    sample,
    ingest,
    read,
    stats,
    migrate,
    delete,
    deletion,
    overwrite,
    gc,
    expire,
    compact,
    audit,
    serve,
    token,
    bench,
    keys,
    gcs,
    catalog,
):
    main.add_command(command)
