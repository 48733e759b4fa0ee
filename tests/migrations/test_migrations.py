"""Migrations on both databases: upgrade, downgrade to base, upgrade again; no drift from models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from vault_store.catalog import migrate
from vault_store.catalog.models import Base

TABLES = {
    "alembic_version",
    "api_token",
    "audit_event",
    "blob",
    "catalog_secret",
    "deletion",
    "overwrite_job",
    "recording_byte_range",
    "replay_subject",
    "tombstone",
}


def _tables(url: str) -> set[str]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        migrate.upgrade(engine)
        assert _tables(database_url) == TABLES
        migrate.downgrade(engine)
        assert _tables(database_url) == {"alembic_version"}
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
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []
