"""`vault-store serve` and `vault-store token ...`: the read API and its bearer tokens."""

from __future__ import annotations

import socket

import click

from vault_store.cli.common import (
    EXIT_CODES_HELP,
    PROJECT_ID,
    emit_json,
    fail,
    open_vault,
    reporting_errors,
    stdout,
)
from vault_store.errors import BackendUnavailable, ConfigError, InvalidInput, VaultError
from vault_store.extras import import_extra
from vault_store.services.tokens import PERMISSIONS
from vault_store.vault import Vault


@click.command(epilog=EXIT_CODES_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Port."
)
@click.option(
    "--workers", type=click.IntRange(1), default=1, show_default=True, help="Worker processes."
)
def serve(host: str, port: int, workers: int) -> None:
    """Serve the decrypting read API (OpenAPI at /openapi.json, metrics at /metrics, the replay
    viewer at /viewer).

    Before listening it checks the catalog, the blob store and the KMS and refuses to start,
    saying why: exit 2 for configuration (a missing home, a key file others can read, an address
    in use), 6 for a backend that is down.
    """
    with reporting_errors(as_json=False):
        uvicorn = import_extra("uvicorn", extra="api", feature="vault-store serve")
        app = import_extra("vault_store.api.app", extra="api", feature="vault-store serve")
        _check_address(host, port)
        vault = open_vault(read_only=True)
        try:
            _check_backends(vault)
        except VaultError:
            vault.close()
            raise
    try:
        if workers > 1:
            # Each worker process imports the factory and builds its own Vault after the fork.
            vault.close()
            uvicorn.run(
                "vault_store.api.app:create_app",
                factory=True,
                host=host,
                port=port,
                workers=workers,
            )
        else:
            # The checked vault serves: no second build, no window for the checks to go stale.
            uvicorn.run(app.create_app(lambda: vault), host=host, port=port)
    except SystemExit as stopped:
        # uvicorn exits 3 when it cannot start, which means "replay not found" in our table.
        if stopped.code not in (None, 0):
            fail(ConfigError("the server did not start (its log above says why)"), as_json=False)
        raise


def _check_address(host: str, port: int) -> None:
    """ConfigError naming the address if it cannot be bound (in use, not ours)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: SO_REUSEADDR, so a socket in TIME_WAIT is no false alarm.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            problem = f"cannot listen ({exc.strerror})"
            raise ConfigError(f"--host/--port {host}:{port}: {problem}") from None


def _check_backends(vault: Vault) -> None:
    found = vault.health()
    down = {name: problem for name, problem in found.items() if problem is not None}
    if down:
        reasons = "; ".join(f"{name}: {problem}" for name, problem in down.items())
        raise BackendUnavailable(f"not starting, {reasons}", backend=", ".join(down), op="check")


@click.group()
def token() -> None:
    """Bearer tokens of the read API, scoped to projects and permissions."""


@token.command("create")
@click.option(
    "--project",
    "projects",
    type=PROJECT_ID,
    multiple=True,
    required=True,
    help="Project id (repeatable).",
)
@click.option(
    "--scope",
    default="read",
    show_default=True,
    help=f"Comma-separated permissions: {', '.join(PERMISSIONS)}.",
)
@click.option("--label", default="", help="What the token is for (shown in the audit trail).")
@click.option("--json", "as_json", is_flag=True, help="Print {token, id, projects, scopes}.")
def token_create(projects: tuple[int, ...], scope: str, label: str, as_json: bool) -> None:
    """Make a token and print it once: it cannot be shown again."""
    with reporting_errors(as_json=as_json), open_vault() as vault:
        issued = vault.issue_token(
            projects, [s.strip() for s in scope.split(",") if s.strip()], label=label
        )
    if as_json:
        emit_json(
            {
                "token": issued.token,
                "id": issued.principal.token_id,
                "projects": sorted(issued.principal.projects),
                "scopes": sorted(issued.principal.permissions),
            }
        )
        return
    click.echo(issued.token)
    click.echo(
        f"id {issued.principal.token_id}; projects {sorted(issued.principal.projects)}; "
        f"scopes {','.join(sorted(issued.principal.permissions))}; store it now, it is not kept",
        err=True,
    )


@token.command("revoke")
@click.argument("token_id")
def token_revoke(token_id: str) -> None:
    """Revoke a token by its id (exit 2 if there is no such live token)."""
    with reporting_errors(as_json=False), open_vault(read_only=True) as vault:
        if not vault.revoke_token(token_id):
            # A wrong argument (exit 2): exit 3 means "replay not found" in the table.
            raise InvalidInput("TOKEN_ID", f"no live token {token_id}")
    stdout.print(f"revoked {token_id}", markup=False)


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def token_list(as_json: bool) -> None:
    """Tokens' ids, labels, projects and scopes (never their secrets)."""
    with reporting_errors(as_json=as_json), open_vault(read_only=True) as vault:
        tokens = vault.list_tokens()
    if as_json:
        emit_json([entry.as_dict() for entry in tokens])
        return
    for entry in tokens:
        stdout.print(
            f"{entry.id}  projects={list(entry.projects)} scopes={','.join(entry.scopes)}"
            f"{'  REVOKED' if entry.revoked else ''}  {entry.label}",
            markup=False,
        )
