"""Alembic migrations run on SQLite and PostgreSQL and match the models exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from arkyra.db import migrate
from arkyra.db.models import Base
from arkyra.db.session import sync_url
from tests.conftest import make_settings


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_round_trip_down_and_up(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'rt.db'}")
    migrate.upgrade(settings)
    assert migrate.current(settings) == migrate.latest()
    migrate.downgrade(settings, "base")
    engine = create_engine(sync_url(settings.effective_database_url))
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    migrate.upgrade(settings)
    assert migrate.current(settings) == migrate.latest()


def test_unknown_database_is_refused(tmp_path: Path) -> None:
    from arkyra.errors import ConfigError

    settings = make_settings(tmp_path, database_url="mysql://root@127.0.0.1/test")
    with pytest.raises(ConfigError, match="unsupported database"):
        migrate.upgrade(settings)
