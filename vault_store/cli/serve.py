"""`vault-store serve` and `vault-store token ...`: the read API and its bearer tokens."""

from __future__ import annotations

import sys

import click

from vault_store.cli.common import (
    EXIT_NOT_FOUND,
    PROJECT_ID,
    emit_json,
    open_vault,
    reporting_errors,
    stdout,
)
from vault_store.extras import import_extra
from vault_store.services.tokens import PERMISSIONS


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, help="Worker processes.")
def serve(host: str, port: int, workers: int) -> None:
    """Serve the decrypting read API (OpenAPI at /openapi.json, metrics at /metrics)."""
    with reporting_errors(as_json=False):
        uvicorn = import_extra("uvicorn", extra="api", feature="vault-store serve")
        app = import_extra("vault_store.api.app", extra="api", feature="vault-store serve")
    if workers > 1:
        # Each worker process imports the factory and builds its own Vault after the fork.
        uvicorn.run(
            "vault_store.api.app:create_app", factory=True, host=host, port=port, workers=workers
        )
    else:
        uvicorn.run(app.create_app(), host=host, port=port)


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
    """Revoke a token by its id (exit 3 if there is no such live token)."""
    with reporting_errors(as_json=False), open_vault() as vault:
        revoked = vault.revoke_token(token_id)
    if not revoked:
        click.echo(f"no live token {token_id}", err=True)
        sys.exit(EXIT_NOT_FOUND)
    stdout.print(f"revoked {token_id}", markup=False)


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def token_list(as_json: bool) -> None:
    """Tokens' ids, labels, projects and scopes (never their secrets)."""
    with reporting_errors(as_json=as_json), open_vault() as vault:
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
