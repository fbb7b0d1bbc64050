"""The database layer against the real embedded PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from embedding_studio.config import Settings
from embedding_studio.db import DatabaseUnavailableError, get_engine, upgrade_database
from embedding_studio.db.engine import normalize_database_url, resolve_database_url
from embedding_studio.db.migrate import current_revision

pytestmark = pytest.mark.integration


def test_migrations_create_schema_with_pgvector(database_url: str) -> None:
    upgrade_database()  # a second upgrade is a no-op
    assert current_revision() is not None
    with get_engine().connect() as connection:
        tables = {row[0] for row in connection.execute(text("select tablename from pg_tables"))}
        assert {"clickstream_batches", "clickstream_sessions", "clickstream_events", "tasks"} <= tables
        version = connection.execute(text("select extversion from pg_extension where extname='vector'")).scalar()
        assert version is not None


def test_exactly_one_collecting_batch_after_clean(clean_db: str) -> None:
    with get_engine().connect() as connection:
        count = connection.execute(
            text("select count(*) from clickstream_batches where status='collecting'")
        ).scalar()
    assert count == 1


def test_normalize_database_url_uses_psycopg3() -> None:
    assert normalize_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"


def test_data_dir_that_cannot_be_created_is_explained(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = Settings(data_dir=blocker / "inner", database_url=None)
    with pytest.raises(DatabaseUnavailableError, match="cannot create the data directory"):
        resolve_database_url(settings)
