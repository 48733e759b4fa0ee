"""Path and query parameters shared by the routes, with their bounds and OpenAPI descriptions."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from vault_store.core.message import MAX_STORED_ID
from vault_store.core.parts import TYPED_PARTS

REPLAY_ID_PATTERN = r"^[0-9a-f]{32}$"
MAX_PER_PAGE = 100
# Project and segment ids are signed 64-bit in the catalog (see message.MAX_STORED_ID).
MAX_ID = MAX_STORED_ID

ProjectId = Annotated[int, Path(ge=0, le=MAX_ID, description="Project id.")]
ReplayId = Annotated[
    str, Path(pattern=REPLAY_ID_PATTERN, description="32 lowercase hex characters.")
]
Cursor = Annotated[
    int | None, Query(ge=0, le=MAX_ID, description="Start at this segment id (from a reply).")
]
PerPage = Annotated[int, Query(ge=1, le=MAX_PER_PAGE, description="Segments per page.")]
PartFilter = Annotated[
    str | None,
    Query(
        pattern=rf"^({'|'.join(TYPED_PARTS)})(,({'|'.join(TYPED_PARTS)}))*$",
        description="Only these parts, comma-separated (dom, console, network, timeline).",
    ),
]
