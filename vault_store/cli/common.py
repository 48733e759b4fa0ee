"""What every CLI command shares: exit codes, error reporting, the Vault from settings, output."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from vault_store.core.message import MAX_STORED_ID
from vault_store.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    CorruptData,
    InvalidInput,
    ReplayNotFound,
    ReplayShredded,
    VaultError,
)
from vault_store.settings import Settings
from vault_store.vault import Vault

EXIT_OK = 0
EXIT_REJECTED = 1  # ingest: some input was rejected (the rest was stored)
EXIT_USAGE = 2  # bad arguments, bad input or bad configuration
EXIT_NOT_FOUND = 3
EXIT_SHREDDED = 4
EXIT_INTEGRITY = 5
EXIT_UNAVAILABLE = 6  # a backend is unreachable; retrying later may work
EXIT_BACKEND = 7  # a backend refused the operation

# A project id as the catalog stores it (signed 64-bit columns): for every --project option.
PROJECT_ID = click.IntRange(0, MAX_STORED_ID)

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 some input rejected, 2 usage or configuration error, 3 replay (or "
    "the asked-for video) not found, 4 replay shredded, 5 integrity failure, 6 backend "
    "unavailable, 7 backend error."
)

# (error type, exit code, label) most specific first.
_ERROR_EXITS: tuple[tuple[type[VaultError], int, str], ...] = (
    (ReplayNotFound, EXIT_NOT_FOUND, "not found"),
    (ReplayShredded, EXIT_SHREDDED, "shredded"),
    (CorruptData, EXIT_INTEGRITY, "integrity failure"),
    (BackendUnavailable, EXIT_UNAVAILABLE, "backend unavailable"),
    (BackendError, EXIT_BACKEND, "backend error"),
    (InvalidInput, EXIT_USAGE, "invalid input"),
    (ConfigError, EXIT_USAGE, "configuration error"),
    (VaultError, EXIT_BACKEND, "error"),
)

stderr = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)


def exit_code_for(error: VaultError) -> tuple[int, str]:
    """The exit code and a short label for an error."""
    for kind, code, label in _ERROR_EXITS:
        if isinstance(error, kind):
            return code, label
    return EXIT_BACKEND, "error"


def fail(error: VaultError, *, as_json: bool) -> NoReturn:
    """Report `error` (JSON on stdout with --json, a line on stderr otherwise) and exit."""
    code, label = exit_code_for(error)
    if as_json:
        emit_json({"error": label, "message": str(error), "exit_code": code})
    else:
        # Escaped: a message may hold brackets (an extra's name, a path) that are not markup.
        stderr.print(f"[bold red]vault-store: {label}:[/] {escape(str(error))}", markup=True)
    sys.exit(code)


@contextmanager
def reporting_errors(*, as_json: bool) -> Iterator[None]:
    """Turn a VaultError into its message and exit code."""
    try:
        yield
    except VaultError as error:
        fail(error, as_json=as_json)


def open_vault(*, read_only: bool = False) -> Vault:
    """The Vault the environment configures.

    A read-only command (`read_only`) on a home that does not exist says so (ConfigError, exit
    2) instead of creating an empty store there and answering "not found".
    """
    settings = Settings.from_env()
    if read_only:
        require_home(settings)
    return Vault.from_settings(settings)


def vault_home() -> Path:
    """The home the environment configures (where the embedded defaults live)."""
    return Settings.from_env().home


def require_home(settings: Settings) -> None:
    """ConfigError if the settings' home, where the store should be, does not exist."""
    missing = settings.missing_home()
    if missing is not None:
        raise ConfigError(
            f"no vault at {missing}: nothing was stored there yet (set VAULT_STORE_HOME to the "
            "home you ingested into, or ingest or run `vault-store demo` first)"
        )


def check_output_path(path: Path, option: str) -> Path:
    """Refuse, before any work, an output path that cannot be written (InvalidInput naming the
    option and the path, exit 2): a missing or unwritable directory, or a directory as file."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InvalidInput(option, f"{path} is a directory; give a file name")
    if not parent.is_dir():
        raise InvalidInput(option, f"directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInput(option, f"directory {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise InvalidInput(option, f"{path} is not writable")
    return path


def check_output_dir(path: Path, option: str) -> Path:
    """Refuse, before any work, an output directory that cannot be made or written
    (InvalidInput naming the option and the path, exit 2)."""
    if path.exists() and not path.is_dir():
        raise InvalidInput(option, f"{path} is not a directory")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InvalidInput(option, f"{existing} is not a directory, so {path} cannot be made")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InvalidInput(option, f"directory {existing} is not writable")
    return path


@contextmanager
def atomic_output(path: Path) -> Iterator[BinaryIO]:
    """A file written next to `path` and renamed onto it on success: a failure (or an
    interruption) leaves no partial output, and the old file, if any, untouched."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as handle:
            yield handle
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def emit_json(document: Any) -> None:
    """One JSON document on stdout."""
    click.echo(json.dumps(document, indent=2, sort_keys=True, default=str))


def show_progress() -> bool:
    """Progress bars only for a person watching a terminal."""
    return stderr.is_terminal


class RowProgress:
    """A rich progress bar fed a (rows, other) callback by long catalog jobs; silent off a
    terminal."""

    def __init__(self, label: str, total: int | None) -> None:
        self._bar = Progress(
            TextColumn(label),
            TextColumn("{task.completed:,} rows"),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
            disable=not show_progress(),
        )
        self._task = self._bar.add_task(label, total=total)

    def __enter__(self) -> Callable[[int, int], None]:
        self._bar.start()
        return lambda rows, _other: self._bar.update(self._task, completed=rows)

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()


class StepBar:
    """A rich progress bar on standard error fed a (step, done, total) callback by gc, expire
    and overwrite; off with --json (`enabled` False) or off a terminal."""

    def __init__(self, *, enabled: bool) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
            disable=not (enabled and show_progress()),
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> Callable[[str, int, int | None], None]:
        self._bar.start()
        return self._update

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def _update(self, step: str, done: int, total: int | None) -> None:
        if step not in self._tasks:
            self._tasks[step] = self._bar.add_task(step, total=total)
        self._bar.update(self._tasks[step], completed=done, total=total)


def table_or_json(document: dict[str, Any], title: str, *, as_json: bool) -> None:
    """A document as JSON for scripts, or as a two-column table for people."""
    if as_json:
        emit_json(document)
        return
    table = Table(title=title, show_header=False)
    for key, value in document.items():
        table.add_row(key.replace("_", " "), "" if value is None else str(value))
    stdout.print(table)
