"""Deletion routes: crypto-shred a replay (202, finished in the background), read a status."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Path, Query
from fastapi.responses import JSONResponse

from vault_store import Scope, Status
from vault_store.api.deps import Caller, Context
from vault_store.api.errors import ERROR_RESPONSES, ApiError
from vault_store.api.params import ProjectId, ReplayId
from vault_store.errors import InvalidInput

router = APIRouter(responses=ERROR_RESPONSES)


_NOTHING_HELD = {
    "description": "Nothing held: the request is recorded (status nothing_held, zero counts) but "
    "there was nothing to delete. 404: the replay was never stored; 410: an earlier deletion "
    "(previous_deletion_id) already took it.",
    "content": {
        "application/json": {
            "example": {
                "error": "not_found",
                "message": "no data of this replay is stored; the request is recorded",
                "deletion_id": "0" * 32,
                "status": "nothing_held",
                "previous_deletion_id": None,
            }
        }
    },
}


@router.delete(
    "/v1/projects/{project_id}/replays/{replay_id}",
    summary="Delete a replay (crypto-shred); 202 with the deletion id",
    status_code=202,
    responses={404: _NOTHING_HELD, 410: _NOTHING_HELD},
    response_model=None,
)
def delete_replay(
    project_id: ProjectId,
    replay_id: ReplayId,
    caller: Caller,
    context: Context,
    background: BackgroundTasks,
    overwrite: Annotated[bool, Query(description="Also zero the ciphertext.")] = False,
) -> dict[str, Any] | JSONResponse:
    if not caller.knows(project_id):
        raise ApiError(404, "not_found", "no such replay")
    if not caller.may("delete", project_id):
        raise ApiError(403, "forbidden", "this token may not delete")
    vault = context.vault()
    status = vault.shred(
        Scope.REPLAY,
        project_id,
        replay_id=replay_id,
        overwrite=overwrite,
        requested_by=f"token:{caller.token_id}" + (f" ({caller.label})" if caller.label else ""),
        reason="API request",
        run=False,
    )
    if status.status is Status.NOTHING_HELD:
        previous = status.previous_deletion_id
        return JSONResponse(
            status_code=410 if previous else 404,
            content={
                "error": "shredded" if previous else "not_found",
                "message": f"already deleted by deletion {previous}"
                if previous
                else "no data of this replay is stored; the request is recorded",
                "deletion_id": status.id,
                "status": status.status.value,
                "previous_deletion_id": previous,
            },
        )
    # Recorded now (reads stop at once); the rows go after the answer. If this process
    # dies first, `vault-store deletion resume` finishes it.
    background.add_task(vault.resume_deletion, status.id)
    return {"deletion_id": status.id, "status": status.status}


@router.get("/v1/deletions/{deletion_id}", summary="A deletion's status and counts")
def deletion(
    deletion_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
    caller: Caller,
    context: Context,
) -> dict[str, Any]:
    try:
        status = context.vault().deletion_status(deletion_id)
    except InvalidInput:
        raise ApiError(404, "not_found", "no such deletion") from None
    if not caller.knows(status.project_id):
        raise ApiError(404, "not_found", "no such deletion")
    if not (caller.may("delete", status.project_id) or caller.may("audit", status.project_id)):
        raise ApiError(403, "forbidden", "this token may not see deletions")
    return status.as_dict()
