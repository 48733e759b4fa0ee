"""Sentry-shaped read routes, so Sentry's replay frontend can read from vault-store in place.

They answer the requests Sentry's frontend sends (``useReplayData``: every page's cursor is
computed up front as ``0:<per_page * i>:0`` from the replay's segment count and the pages are
fetched in parallel) as Sentry's own endpoints do: offset pagination over the stored segments in
segment order, cursors ``value:offset:is_prev``, a ``Link`` header with ``rel="previous"`` and
``rel="next"``, and ``[]`` for a replay with no segments (Sentry does not tell an unknown replay
from an empty one). Two differences, both deliberate: a shredded replay answers 410 (Sentry would
answer ``[]`` once the data is gone; a viewer needs to say "deleted"), and errors keep this API's
``{"error", "message"}`` body.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from vault_store.api.deps import ApiContext, Caller, Context, may_read
from vault_store.api.errors import ERROR_RESPONSES, ApiError
from vault_store.api.params import MAX_ID, MAX_PER_PAGE
from vault_store.api.recordings import counted, first_chunk
from vault_store.errors import ReplayNotFound
from vault_store.vault import Vault

router = APIRouter(
    prefix="/api/0/projects/{organization_slug}/{project_id_or_slug}/replays",
    responses=ERROR_RESPONSES,
)
# The replay details route Sentry's frontend reads first (its count_segments sizes the pages).
organizations = APIRouter(
    prefix="/api/0/organizations/{organization_slug}/replays", responses=ERROR_RESPONSES
)

SLUG_PATTERN = r"^[A-Za-z0-9_-]{1,100}$"
# A UUID with or without its dashes, in either case (Sentry strips the dashes).
SENTRY_REPLAY_ID_PATTERN = (
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
# Sentry's cursor: "value:offset:is_prev". The offset pages; value and is_prev are carried
# along (its offset paginator reads only the offset, as we do).
CURSOR_PATTERN = r"^-?\d{1,19}(\.\d+)?:\d{1,19}:[01]$"
_CURSOR = re.compile(CURSOR_PATTERN)

OrganizationSlug = Annotated[
    str, Path(pattern=SLUG_PATTERN, description="Organization slug (or id).")
]
ProjectIdOrSlug = Annotated[
    str,
    Path(
        pattern=SLUG_PATTERN,
        description="Project id, or a slug mapped in VAULT_STORE_API_PROJECT_SLUGS.",
    ),
]
SentryReplayId = Annotated[
    str, Path(pattern=SENTRY_REPLAY_ID_PATTERN, description="Replay id, dashed or not.")
]
SentryCursor = Annotated[
    str | None,
    Query(
        pattern=CURSOR_PATTERN,
        description='Sentry\'s "value:offset:is_prev"; the offset counts stored segments.',
    ),
]
SentryPerPage = Annotated[
    int, Query(ge=1, le=MAX_PER_PAGE, description="Segments per page (at most 100).")
]
Download = Annotated[
    str | None,
    Query(description="Accepted as Sentry's frontend sends it; the bodies are always sent."),
]


@router.get(
    "/{replay_id}/recording-segments/",
    summary="Sentry's recording segments: one page of segments, each its rrweb events",
    response_class=StreamingResponse,
)
def recording_segments(
    request: Request,
    organization_slug: OrganizationSlug,
    project_id_or_slug: ProjectIdOrSlug,
    replay_id: SentryReplayId,
    caller: Caller,
    context: Context,
    cursor: SentryCursor = None,
    per_page: SentryPerPage = MAX_PER_PAGE,
    download: Download = None,
) -> Response:
    project_id = _project_id(context, organization_slug, project_id_or_slug)
    vault = may_read(context, caller, project_id)
    offset = _offset(cursor)
    try:
        page, more = vault.replay_page_at(
            project_id, _replay(replay_id), offset=offset, segments=per_page
        )
    except ReplayNotFound:
        # Sentry answers an unknown replay like an empty one.
        body = b"[]"
        context.metrics.bytes_sent(len(body))
        headers = {"Link": _link(request, offset, per_page, more=False)}
        return Response(body, media_type="application/json", headers=headers)
    chunks = vault.read_page(page)
    first = first_chunk(chunks)
    return StreamingResponse(
        counted(first, chunks, context.metrics),
        media_type="application/json",
        headers={"Link": _link(request, offset, per_page, more=more)},
    )


@router.get(
    "/{replay_id}/recording-segments/{segment_id}/",
    summary="Sentry's recording segment: one segment's rrweb events",
)
def recording_segment(
    organization_slug: OrganizationSlug,
    project_id_or_slug: ProjectIdOrSlug,
    replay_id: SentryReplayId,
    segment_id: Annotated[int, Path(ge=0, le=MAX_ID)],
    caller: Caller,
    context: Context,
    download: Download = None,
) -> Response:
    project_id = _project_id(context, organization_slug, project_id_or_slug)
    vault = may_read(context, caller, project_id)
    body = vault.read_segment(project_id, _replay(replay_id), segment_id)
    if body is None:
        raise ApiError(404, "not_found", f"replay has no segment {segment_id}")
    context.metrics.bytes_sent(len(body))
    return Response(body, media_type="application/json")


@router.get(
    "/{replay_id}/videos/{segment_id}/",
    summary="Sentry's replay video: one mobile segment's video, decrypted",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def video(
    organization_slug: OrganizationSlug,
    project_id_or_slug: ProjectIdOrSlug,
    replay_id: SentryReplayId,
    segment_id: Annotated[int, Path(ge=0, le=MAX_ID)],
    caller: Caller,
    context: Context,
) -> Response:
    project_id = _project_id(context, organization_slug, project_id_or_slug)
    vault = may_read(context, caller, project_id)
    replay = _replay(replay_id)
    body = vault.read_video(project_id, replay, segment_id)
    if body is None:
        raise ApiError(404, "not_found", f"replay has no video for segment {segment_id}")
    context.metrics.bytes_sent(len(body))
    # As Sentry serves it: octet-stream, sent as an attachment (Range requests are not served).
    return Response(
        body,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{replay}-{segment_id}.video"'},
    )


@organizations.get(
    "/{replay_id}/",
    summary="Sentry's replay details, minimal: where the replay is and how many segments it has",
)
def replay_details(
    organization_slug: OrganizationSlug,
    replay_id: SentryReplayId,
    caller: Caller,
    context: Context,
) -> dict[str, Any]:
    """``{"data": {...}}`` with the fields Sentry's frontend needs to load a replay: ``id``,
    ``project_id`` (a string, as Sentry sends it), ``count_segments``, ``started_at``,
    ``finished_at`` and ``duration``; the rest empty. Stored rows only (nothing is decrypted):
    the times are when the first and last segment were stored, so the frontend, which widens
    them to the events it reads, starts at the first event. The replay is looked for in every
    project the token may read (numeric order); 404 if none holds it, 410 if it was shredded."""
    replay = _replay(replay_id)
    vault = context.vault()
    for project_id in sorted(caller.projects):
        if not caller.may("read", project_id):
            continue
        try:
            count, first, last = _stored(vault, project_id, replay)
        except ReplayNotFound:
            continue
        return {"data": _record(replay, project_id, count, first, last)}
    raise ApiError(404, "not_found", "no such replay")


def _stored(vault: Vault, project_id: int, replay: str) -> tuple[int, datetime, datetime]:
    """A replay's number of stored segments and when its first and last row were stored, a
    planned page at a time (ReplayNotFound / ReplayShredded)."""
    count = 0
    times: list[datetime] = []
    more = True
    while more:
        page, more = vault.replay_page_at(project_id, replay, offset=count, segments=MAX_PER_PAGE)
        if not page.segment_ids:
            break
        count += len(page.segment_ids)
        stored = [row.created_at for row in page.rows]
        times += [min(stored), max(stored)]
    if not times:
        raise ReplayNotFound("no such replay")
    return count, min(times), max(times)


def _record(
    replay: str, project_id: int, count: int, first: datetime, last: datetime
) -> dict[str, Any]:
    """A ReplayRecord as Sentry's frontend maps it (mapResponseToReplayRecord)."""
    return {
        "id": replay,
        "project_id": str(project_id),
        "count_segments": count,
        "started_at": _iso(first),
        "finished_at": _iso(last),
        "duration": max(0, round((last - first).total_seconds())),
        "is_archived": False,
        "replay_type": "session",
        "count_errors": 0,
        "count_warnings": 0,
        "count_infos": 0,
        "count_urls": 0,
        "count_dead_clicks": 0,
        "count_rage_clicks": 0,
        "urls": [],
        "error_ids": [],
        "warning_ids": [],
        "info_ids": [],
        "trace_ids": [],
        "releases": [],
        "tags": {},
        "user": {"id": None, "username": None, "email": None, "ip": None, "display_name": None},
        "platform": None,
        "environment": None,
        "dist": None,
        "sdk": {"name": None, "version": None},
        "os": {"name": None, "version": None},
        "browser": {"name": None, "version": None},
        "device": {"name": None, "brand": None, "model": None, "family": None},
        "has_viewed": False,
        "activity": 0,
    }


def _iso(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _project_id(context: ApiContext, organization: str, project: str) -> int:
    """A numeric id as it is; a slug through the mapping; 404 (as for a project the token does
    not cover) for anything else."""
    if project.isdigit():
        number = int(project)
        if number <= MAX_ID:
            return number
    else:
        mapped = context.policy.project_slugs.get((organization, project))
        if mapped is not None:
            return mapped
    raise ApiError(404, "not_found", "no such replay")


def _replay(replay_id: str) -> str:
    return replay_id.replace("-", "").lower()


def _offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not _CURSOR.match(cursor):  # the Query pattern checks it first; this keeps it honest
        raise ApiError(400, "bad_request", "query.cursor: expected value:offset:is_prev")
    offset = int(cursor.split(":")[1])
    if offset > MAX_ID:
        raise ApiError(400, "bad_request", f"query.cursor: offset above {MAX_ID}")
    return offset


def _link(request: Request, offset: int, per_page: int, *, more: bool) -> str:
    """Sentry's Link header (its offset paginator's cursors: previous at offset - per_page, next
    at offset + per_page, each saying whether it holds results)."""
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "cursor"])
    base = f"{request.url.scheme}://{request.url.netloc}{request.url.path}?{query}"
    previous = f"0:{max(0, offset - per_page)}:1"
    following = f"0:{offset + per_page}:0"
    return ", ".join(
        f'<{base}&cursor={cursor}>; rel="{rel}"; results="{str(results).lower()}"; '
        f'cursor="{cursor}"'
        for rel, cursor, results in (
            ("previous", previous, offset > 0),
            ("next", following, more),
        )
    )
