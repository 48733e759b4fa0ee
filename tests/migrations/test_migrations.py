"""Migrations on both databases: upgrade, downgrade to base, upgrade again; no drift from models."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text

from vault_store.catalog import migrate
from vault_store.catalog.models import Base
from vault_store.catalog.partitions import is_partition

TABLES = {
    "alembic_version",
    "api_token",
    "audit_event",
    "blob",
    "catalog_secret",
    "deletion",
    "kek_in_use",
    "overwrite_job",
    "recording_byte_range",
    "replay",
    "replay_subject",
    "superseded_range",
    "tombstone",
}


def _tables(url: str) -> set[str]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        return {name for name in inspect(engine).get_table_names() if not is_partition(name)}
    finally:
        engine.dispose()


def _functions(engine: Engine) -> set[str]:
    """The functions in the catalog's schema (PostgreSQL; SQLite has none)."""
    if engine.dialect.name != "postgresql":
        return set()
    with engine.connect() as conn:
        return set(
            conn.execute(
                text(
                    "SELECT p.proname FROM pg_proc p "
                    "WHERE p.pronamespace = CAST(current_schema() AS regnamespace)"
                )
            ).scalars()
        )


def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        migrate.upgrade(engine)
        assert _tables(database_url) == TABLES
        assert _functions(engine) == (
            {"deletion_rows_left"} if engine.dialect.name == "postgresql" else set()
        )
        migrate.downgrade(engine)
        assert _tables(database_url) == {"alembic_version"}
        assert _functions(engine) == set()
        migrate.upgrade(engine)
        assert _tables(database_url) == TABLES
        (expiry,) = [
            index
            for index in inspect(engine).get_indexes("recording_byte_range")
            if index["name"] == "ix_recording_byte_range_expires_at"
        ]
        if engine.dialect.name == "postgresql":
            assert expiry["dialect_options"]["postgresql_using"] == "brin"
    finally:
        engine.dispose()


def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_object": lambda obj, name, type_, *_: (
                        not (type_ == "table" and name is not None and is_partition(name))
                    ),
                },
            )
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_upgrading_a_catalog_with_rows_keeps_them_and_partitions_them(database_url: str) -> None:
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        migrate.upgrade(engine, "0001")
        rows = [
            {
                "project_id": 1,
                "replay_id": f"{replay:032x}",
                "segment_id": segment,
                "part": "recording",
                "blob_path": "r30d/x.vsb",
                "start": segment * 10,
                "stop": segment * 10 + 10,
                "wrapped_dek": b"w",
                "kek": "k",
                "key_check": b"c",
                "created_at": datetime(2026, 1, replay, tzinfo=UTC),
                "expires_at": datetime(2026, 2, replay, 12, tzinfo=UTC),
            }
            for replay in (1, 2)
            for segment in range(3)
        ]
        columns = ", ".join(rows[0])
        values = ", ".join(f":{name}" for name in rows[0])
        with engine.begin() as conn:
            conn.execute(
                text(f"INSERT INTO recording_byte_range ({columns}) VALUES ({values})"), rows
            )
        migrate.upgrade(engine)
        with engine.connect() as conn:
            buckets = conn.execute(
                text("SELECT replay_id, expiry_bucket FROM replay ORDER BY replay_id")
            ).all()
            moved = conn.execute(
                text("SELECT count(*), count(DISTINCT expiry_bucket) FROM recording_byte_range")
            ).one()
            keks = conn.execute(text("SELECT kek FROM kek_in_use")).scalars().all()
        assert [str(bucket) for _, bucket in buckets] == ["2026-02-01", "2026-02-02"]
        assert tuple(moved) == (6, 2)
        assert keks == ["k"]  # 0003 lists the KEKs the rows already stored need
        if engine.dialect.name == "postgresql":
            names = {n for n in inspect(engine).get_table_names() if is_partition(n)}
            assert names == {"recording_byte_range_p20260201", "recording_byte_range_p20260202"}
        migrate.downgrade(engine, "0001")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM recording_byte_range")).scalar() == 6
    finally:
        engine.dispose()
