"""Schema migrations with alembic (plain SQL revisions under ``migrations/versions``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

_MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_ID = 0x706C616E  # advisory lock: two processes starting together migrate one at a time


def _sqlalchemy_url(database_url: str) -> str:
    scheme, _, rest = database_url.partition("://")
    return f"postgresql+psycopg://{rest}" if scheme in ("postgresql", "postgres") else database_url


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")  # a broken install, not a user error
    return head


def migrate(database_url: str, *, revision: str = "head") -> str:
    """Bring the database to ``revision`` (idempotent); return the revision it is at."""
    engine = create_engine(_sqlalchemy_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({_LOCK_ID})")
            try:
                config = _config()
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                connection.commit()
                current = MigrationContext.configure(connection).get_current_revision()
            finally:
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({_LOCK_ID})")
                connection.commit()
    finally:
        engine.dispose()
    return current or "base"


def current_revision(database_url: str) -> str | None:
    engine = create_engine(_sqlalchemy_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
