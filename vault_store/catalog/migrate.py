"""Run the Alembic migrations programmatically, from a checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def migrations_path() -> Path:
    """The migrations folder: inside the wheel, or at the top of the source checkout."""
    for candidate in (_PACKAGE_DIR / "_migrations", _PACKAGE_DIR.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("vault-store migrations are missing from this installation")


def alembic_config(engine: Engine) -> Config:
    """An Alembic config that runs on `engine` (env.py takes it from the attributes)."""
    config = Config()
    config.set_main_option("script_location", str(migrations_path()))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to `revision`."""
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Take the schema down to `revision`."""
    command.downgrade(alembic_config(engine), revision)
