"""Read routes: a replay's segment metadata, its merged recording (streamed), one segment."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response, StreamingResponse

from vault_store.api.deps import Caller, Context, may_read
from vault_store.api.errors import ERROR_RESPONSES, ApiError
from vault_store.api.metrics import Metrics
from vault_store.api.params import (
    MAX_ID,
    MAX_PER_PAGE,
    Cursor,
    PartFilter,
    PerPage,
    ProjectId,
    ReplayId,
)
from vault_store.core.parts import parse_filter

router = APIRouter(responses=ERROR_RESPONSES)


@router.get(
    "/v1/projects/{project_id}/replays/{replay_id}/segments",
    summary="Segment metadata of a replay, one page at a time",
)
def list_segments(
    project_id: ProjectId,
    replay_id: ReplayId,
    caller: Caller,
    context: Context,
    cursor: Cursor = None,
    per_page: PerPage = 50,
) -> dict[str, Any]:
    vault = may_read(context, caller, project_id)
    page = vault.replay_page(
        project_id,
        replay_id,
        start=cursor or 0,
        max_segments=per_page,
        max_bytes=context.limits.max_response_bytes,
    )
    segments: dict[int, dict[str, Any]] = {}
    for row in page.rows:
        entry = segments.setdefault(
            row.segment_id, {"id": row.segment_id, "stored_bytes": 0, "parts": []}
        )
        entry["stored_bytes"] += row.size
        entry["parts"].append(row.part)
    return {"segments": list(segments.values()), "next_cursor": page.next_cursor}


@router.get(
    "/v1/projects/{project_id}/replays/{replay_id}/recording",
    summary="The merged recording (JSON array, one element per segment), streamed",
    response_class=StreamingResponse,
)
def recording(
    project_id: ProjectId,
    replay_id: ReplayId,
    caller: Caller,
    context: Context,
    cursor: Cursor = None,
    per_page: PerPage = MAX_PER_PAGE,
    part: PartFilter = None,
) -> Response:
    vault = may_read(context, caller, project_id)
    page = vault.replay_page(
        project_id,
        replay_id,
        start=cursor or 0,
        max_segments=per_page,
        max_bytes=context.limits.max_response_bytes,
        only=parse_filter(part),
    )
    chunks = vault.read_page(page)
    first = first_chunk(chunks)
    headers = {"X-Next-Cursor": str(page.next_cursor)} if page.next_cursor is not None else {}
    return StreamingResponse(
        counted(first, chunks, context.metrics), media_type="application/json", headers=headers
    )


@router.get(
    "/v1/projects/{project_id}/replays/{replay_id}/segments/{segment_id}",
    summary="One segment's events",
)
def segment(
    project_id: ProjectId,
    replay_id: ReplayId,
    segment_id: Annotated[int, Path(ge=0, le=MAX_ID)],
    caller: Caller,
    context: Context,
    part: PartFilter = None,
) -> Response:
    vault = may_read(context, caller, project_id)
    body = vault.read_segment(project_id, replay_id, segment_id, only=parse_filter(part))
    if body is None:
        raise ApiError(404, "not_found", f"replay has no segment {segment_id}")
    context.metrics.bytes_sent(len(body))
    return Response(body, media_type="application/json")


def first_chunk(chunks: Iterator[bytes]) -> bytes:
    """Produce the first chunk before answering, so errors become statuses, not broken bodies."""
    return next(chunks)


def counted(first: bytes, rest: Iterator[bytes], metrics: Metrics) -> Iterator[bytes]:
    metrics.bytes_sent(len(first))
    yield first
    for chunk in rest:
        metrics.bytes_sent(len(chunk))
        yield chunk
