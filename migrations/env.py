"""Alembic environment: metadata from arkyra.db, URL from arkyra settings (or the caller)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from arkyra.config import get_settings
from arkyra.db.models import Base
from arkyra.db.session import sync_url

config = context.config
target_metadata = Base.metadata


def _url():  # type: ignore[no-untyped-def]
    return config.attributes.get("database_url") or sync_url(get_settings().effective_database_url)


def run_migrations_offline() -> None:
    context.configure(
        url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
