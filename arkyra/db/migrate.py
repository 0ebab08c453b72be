"""Run Alembic migrations programmatically (``arkyra db upgrade``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from arkyra.config import Settings
from arkyra.db.session import ensure_sqlite_dir, sync_url


def migrations_dir() -> Path:
    """The Alembic scripts: in the source tree, or bundled into the wheel."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "migrations", here.parents[1] / "_migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("Alembic migrations not found next to the arkyra package")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    url = sync_url(database_url)
    ensure_sqlite_dir(url)
    config.attributes["database_url"] = url
    return config


def upgrade(settings: Settings, revision: str = "heads") -> None:
    command.upgrade(alembic_config(settings.effective_database_url), revision)


def downgrade(settings: Settings, revision: str) -> None:
    command.downgrade(alembic_config(settings.effective_database_url), revision)


def current(settings: Settings) -> str | None:
    """The applied revision(s), comma-separated; ``None`` for an empty database."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(sync_url(settings.effective_database_url))
    try:
        with engine.connect() as connection:
            heads = MigrationContext.configure(connection).get_current_heads()
    finally:
        engine.dispose()
    return ",".join(sorted(heads)) or None


def latest() -> str:
    """The revision(s) a fully migrated database is at, comma-separated."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return ",".join(sorted(script.get_heads()))
