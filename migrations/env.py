"""Alembic environment: runs on the engine the Catalog passes in (or a URL from alembic -x url=)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, create_engine

from vault_store.catalog.models import Base
from vault_store.catalog.partitions import is_partition

config = context.config
target_metadata = Base.metadata


def _engine() -> Engine:
    engine = config.attributes.get("engine")
    if isinstance(engine, Engine):
        return engine
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("no database: pass -x url=... or run through vault_store.catalog")
    return create_engine(url)


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Partitions of the range table are made at run time, not by the models: not drift."""
    return not (type_ == "table" and name is not None and is_partition(name))


def run_migrations_online() -> None:
    """Run the migrations in one transaction on the configured engine."""
    engine = _engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things in place; batch mode copies the table instead.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
