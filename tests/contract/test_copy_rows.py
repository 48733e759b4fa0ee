"""The flush's binary COPY on the real PostgreSQL: byte for byte what the server itself writes,
every value back unchanged, and a row it cannot encode failing its whole flush."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from vault_store.catalog import BlobRecord, Catalog, RangeRecord, copy_rows
from vault_store.catalog.copy_rows import COLUMNS, ROWS_PER_CHUNK, UnencodableRow, binary_copy
from vault_store.catalog.models import Blob, RecordingByteRange, Replay
from vault_store.errors import BackendError

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
INT8 = 2**63 - 1


def _row(segment: int, **changes: Any) -> RangeRecord:
    row = RangeRecord(
        project_id=7,
        replay_id="0123456789abcdef0123456789abcdef",
        segment_id=segment,
        part="dom",
        blob_path="r90d/2026-11-24/12/b.vsb",
        start=segment * 100,
        stop=segment * 100 + 100,
        wrapped_dek=bytes(range(256)),
        kek="local-kms:/k#v1",
        key_check=b"\x00" * 32,
        created_at=NOW,
        expires_at=NOW + timedelta(days=90),
    )
    return replace(row, **changes)


def _blob(path: str, rows: list[RangeRecord]) -> BlobRecord:
    return BlobRecord(
        path=path,
        size=max(r.stop for r in rows),
        frame_count=len(rows),
        retention_days=90,
        created_at=NOW,
        expires_at=NOW + timedelta(days=90),
    )


@pytest.fixture
def pg(postgres_url: str) -> Any:
    catalog = Catalog(postgres_url)
    catalog.migrate()
    yield catalog
    catalog.dispose()


def _edge_rows() -> list[RangeRecord]:
    """Values text COPY would have to escape or parse, and ends of each type's range."""
    return [
        _row(0),
        _row(1, part="console", blob_path="dir\twith\ttabs/é 🎬\\n.vsb", start=0, stop=2**40),
        _row(
            0,
            project_id=INT8,
            replay_id="f" * 32,
            kek="tab\there\\and\nnewline\r",
            wrapped_dek=b"",
            created_at=datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
            expires_at=NOW + timedelta(days=90, microseconds=1),
        ),
        _row(
            INT8,
            start=0,
            stop=1,
            project_id=-5,
            replay_id="a" * 32,
            created_at=datetime(
                2026, 11, 24, 17, 30, 0, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))
            ),
            expires_at=datetime(2027, 2, 22, 4, 0, tzinfo=timezone(timedelta(hours=-8))),
        ),
    ]


def test_the_encoding_is_byte_for_byte_what_postgresql_writes(pg: Catalog) -> None:
    rows = _edge_rows()
    pg.insert_blob(_blob(rows[0].blob_path, rows), rows)
    with pg.connection("test") as conn:
        buckets = {
            (p, r): b
            for p, r, b in conn.execute(
                select(Replay.project_id, Replay.replay_id, Replay.expiry_bucket)
            )
        }
    ordered = sorted(rows, key=lambda r: (r.project_id, r.replay_id, r.segment_id, r.part))
    raw = pg.engine.raw_connection()
    try:
        out = io.BytesIO()
        raw.cursor().copy_expert(
            f"COPY (SELECT {', '.join(COLUMNS)} FROM recording_byte_range "
            "ORDER BY project_id, replay_id, segment_id, part) TO STDOUT (FORMAT binary)",
            out,
        )
    finally:
        raw.close()
    assert out.getvalue() == b"".join(binary_copy(ordered, buckets, "utf_8"))


def test_every_value_comes_back_unchanged(pg: Catalog) -> None:
    rows = _edge_rows()
    pg.insert_blob(_blob(rows[0].blob_path, rows), rows)
    for project, replay in {(r.project_id, r.replay_id) for r in rows}:
        mine = sorted(
            (r for r in rows if (r.project_id, r.replay_id) == (project, replay)),
            key=lambda r: (r.segment_id, r.part),
        )
        assert pg.replay_ranges(project, replay) == mine


_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
_MOMENTS = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.timezones()
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    project=st.integers(-(2**63), INT8),
    segment=st.integers(0, 2**40),
    part=st.text(
        st.characters(codec="utf-8", exclude_characters="\x00"),
        min_size=1,
        max_size=16,
    ),
    path=_TEXT.filter(bool),
    kek=_TEXT,
    key=st.binary(max_size=80),
    created=_MOMENTS,
)
def test_any_row_comes_back_unchanged(
    pg: Catalog,
    project: int,
    segment: int,
    part: str,
    path: str,
    kek: str,
    key: bytes,
    created: datetime,
) -> None:
    replay = uuid.uuid4().hex  # every example its own replay: a repeat is not a duplicate
    row = _row(
        segment,
        project_id=project,
        replay_id=replay,
        part=part,
        blob_path=f"{path[:200]}/{uuid.uuid4().hex}",
        kek=kek,
        wrapped_dek=key,
        created_at=created,
    )
    pg.insert_blob(_blob(row.blob_path, [row]), [row])
    (back,) = pg.replay_ranges(project, replay)
    # The same instant (a time in a zone's DST fold compares unequal across zones in Python,
    # PEP 495, though it names the same instant), and every other field equal.
    assert back.created_at.astimezone(UTC) == created.astimezone(UTC)
    assert back == replace(row, created_at=back.created_at)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"created_at": datetime(2026, 11, 24, 12, 0)}, "must carry a time zone"),
        ({"start": 0, "stop": 2**63}, "int too large"),
        ({"part": "\udc80"}, "surrogates not allowed"),
        ({"part": "a\x00b"}, "NUL character"),
    ],
    ids=["naive-time", "past-int8", "lone-surrogate", "nul"],
)
def test_a_row_it_cannot_encode_fails_its_flush_by_name_and_stores_nothing(
    pg: Catalog, bad: dict[str, Any], message: str
) -> None:
    """Not retryable (psycopg2 would report a failed read as a lost connection), and the
    whole flush is rolled back, the blob row with it."""
    good, broken = _row(0), _row(1, **bad)
    with pytest.raises(UnencodableRow, match=f"replay 7/{good.replay_id} segment 1 .*{message}"):
        pg.insert_blob(_blob(good.blob_path, [good, broken]), [good, broken])
    with pg.connection("test") as conn:
        assert conn.execute(select(func.count()).select_from(RecordingByteRange)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(Blob)).scalar_one() == 0


def test_a_bug_while_encoding_is_raised_as_itself_not_as_a_lost_connection(pg: Catalog) -> None:
    """psycopg2 reports any exception in the stream's read() as a cancelled query, which the
    catalog would take for a lost connection and retry: the original is raised instead."""
    good, broken = _row(0), _row(1, wrapped_dek=None)
    with pytest.raises(TypeError):
        pg.insert_blob(_blob(good.blob_path, [good, broken]), [good, broken])
    with pg.connection("test") as conn:
        assert conn.execute(select(func.count()).select_from(RecordingByteRange)).scalar_one() == 0


def test_text_goes_in_the_connections_own_encoding(postgres_url: str) -> None:
    """A deployment whose connections speak LATIN1 gets its text back, not UTF-8 bytes read as
    LATIN1 ("clÃ©")."""
    catalog = Catalog(f"{postgres_url}&client_encoding=latin1")
    try:
        catalog.migrate()
        rows = [_row(0, kek="clé", blob_path="répertoire/b.vsb")]
        catalog.insert_blob(_blob(rows[0].blob_path, rows), rows)
        assert catalog.replay_ranges(7, rows[0].replay_id) == rows
        raw = catalog.engine.raw_connection()
        try:
            assert raw.encoding == "LATIN1"  # the test's premise: not UTF-8 on the wire
        finally:
            raw.close()
    finally:
        catalog.dispose()


def test_a_flush_of_many_pieces_stores_every_row(pg: Catalog) -> None:
    """The stream is read in pieces; each read resumes where the last stopped."""
    rows = [_row(n, replay_id=f"{n % 37:032x}") for n in range(ROWS_PER_CHUNK * 3 + 7)]
    outcome = pg.insert_blob(_blob(rows[0].blob_path, rows), rows)
    with pg.connection("test") as conn:
        stored = conn.execute(select(func.count()).select_from(RecordingByteRange)).scalar_one()
    assert (outcome.inserted, stored) == (len(rows), len(rows))


def test_a_stream_that_loses_rows_fails_its_flush(
    pg: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL takes a binary stream cut between two rows as complete: the flush checks the
    count it stored, so a lost piece can never pass as stored."""

    def losing_a_piece(*args: Any) -> Iterator[bytes]:
        pieces = list(binary_copy(*args))
        yield from pieces[:1] + pieces[2:]  # the second: 200 of the 400 rows

    monkeypatch.setattr(copy_rows, "binary_copy", losing_a_piece)
    rows = [_row(n) for n in range(ROWS_PER_CHUNK * 2)]
    with pytest.raises(BackendError, match=f"COPY stored 200 of {len(rows)} rows"):
        pg.insert_blob(_blob(rows[0].blob_path, rows), rows)
    with pg.connection("test") as conn:
        assert conn.execute(select(func.count()).select_from(RecordingByteRange)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(Blob)).scalar_one() == 0
