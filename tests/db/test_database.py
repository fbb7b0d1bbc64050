"""The database layer against the real embedded PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, make_url, text

from embedding_studio.config import Settings
from embedding_studio.db import Database, DatabaseUnavailableError, upgrade_database
from embedding_studio.db.engine import normalize_database_url, resolve_database_url
from embedding_studio.db.migrate import alembic_config, current_revision

pytestmark = pytest.mark.integration


def test_migrations_create_schema_with_pgvector(database: Database) -> None:
    upgrade_database()  # a second upgrade is a no-op
    assert current_revision() is not None
    with database.connection() as connection:
        tables = {row[0] for row in connection.execute("select tablename from pg_tables")}
        assert {"clickstream_batches", "clickstream_sessions", "clickstream_events", "tasks"} <= tables
        version = connection.execute("select extversion from pg_extension where extname='vector'").fetchone()
        assert version is not None and version[0] is not None


def test_exactly_one_collecting_batch_after_clean(clean_db: str, database: Database) -> None:
    with database.connection() as connection:
        row = connection.execute("select count(*) from clickstream_batches where status='collecting'").fetchone()
    assert row is not None and row[0] == 1


def test_normalize_database_url_uses_psycopg3() -> None:
    assert normalize_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"


def test_data_dir_that_cannot_be_created_is_explained(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = Settings(data_dir=blocker / "inner", database_url=None)
    with pytest.raises(DatabaseUnavailableError, match="cannot create the data directory"):
        resolve_database_url(settings)


@pytest.fixture()
def scratch_engine(database_url: str) -> Iterator[Engine]:
    """An empty database of its own on the test server, for walking migrations up from an old revision."""
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(make_url(database_url).set(database=name))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def _migrate(engine: Engine, revision: str, direction: str = "upgrade") -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, direction)(config, revision)


def test_event_id_migration_keeps_every_event_and_keys_them_per_session(scratch_engine: Engine) -> None:
    _migrate(scratch_engine, "0004_procrastinate")
    with scratch_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO clickstream_sessions (session_id, batch_id, query, results) "
                "SELECT s, (SELECT id FROM clickstream_batches), '\"q\"', ARRAY['a', 'b'] "
                "FROM unnest(ARRAY['s1', 's2']) s"
            )
        )
        connection.execute(
            text(
                "INSERT INTO clickstream_events (event_id, session_id, item_id, payload) VALUES "
                "('s1-e1', 's1', 'a', '{\"dwell\": 3}'), ('s1-e2', 's1', 'b', NULL), ('s2-e1', 's2', 'b', NULL)"
            )
        )
    before = _events(scratch_engine)

    _migrate(scratch_engine, "head")
    assert _events(scratch_engine) == before
    with scratch_engine.begin() as connection:
        # What the old key refused: another session's event of the same id.
        connection.execute(
            text("INSERT INTO clickstream_events (event_id, session_id, item_id) VALUES ('s1-e1', 's2', 'a')")
        )
        key = connection.execute(
            text(
                "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i "
                "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                "WHERE i.indrelid = 'clickstream_events'::regclass AND i.indisprimary"
            )
        ).scalar_one()
    assert key == ["session_id", "event_id"]

    # Going back would have to drop one of the two "s1-e1" events: refused, naming it.
    with pytest.raises(RuntimeError, match="'s1-e1' is used by 2 sessions"):
        _migrate(scratch_engine, "0004_procrastinate", "downgrade")
    with scratch_engine.begin() as connection:
        connection.execute(text("DELETE FROM clickstream_events WHERE session_id = 's2' AND event_id = 's1-e1'"))
    _migrate(scratch_engine, "0004_procrastinate", "downgrade")
    assert _events(scratch_engine) == before


def _events(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                text("SELECT session_id, event_id, item_id, payload FROM clickstream_events ORDER BY 1, 2")
            )
        ]


def test_rank_offset_migration_moves_the_offsets_search_recorded(scratch_engine: Engine) -> None:
    _migrate(scratch_engine, "0005_event_ids_per_session")
    payloads = {
        "search-page-2": '{"model_id": "m", "offset": 10}',
        "search-page-1": '{"model_id": "m", "offset": 0}',
        "client-own-offset": '{"offset": 3, "page": 2}',
        "client-odd-offset": '{"model_id": "m", "offset": "ten"}',
        "no-payload": None,
    }
    with scratch_engine.begin() as connection:
        for session_id, payload in payloads.items():
            connection.execute(
                text(
                    "INSERT INTO clickstream_sessions (session_id, batch_id, query, results, payload) "
                    "VALUES (:id, (SELECT id FROM clickstream_batches), '\"q\"', ARRAY['a'], CAST(:payload AS jsonb))"
                ),
                {"id": session_id, "payload": payload},
            )

    _migrate(scratch_engine, "0006_session_rank_offset")
    with scratch_engine.connect() as connection:
        offsets = dict(connection.execute(text("SELECT session_id, rank_offset FROM clickstream_sessions")).all())
        kept = connection.execute(
            text("SELECT payload FROM clickstream_sessions WHERE session_id = 'search-page-2'")
        ).scalar_one()
    assert offsets == {
        "search-page-2": 10,
        "search-page-1": 0,
        "client-own-offset": 0,
        "client-odd-offset": 0,
        "no-payload": 0,
    }
    assert kept == {"model_id": "m", "offset": 10}  # copied, not moved out of what the client can read

    _migrate(scratch_engine, "0005_event_ids_per_session", "downgrade")
    with scratch_engine.connect() as connection:
        columns = connection.execute(
            text("SELECT column_name FROM information_schema.columns WHERE table_name = 'clickstream_sessions'")
        ).scalars()
        assert "rank_offset" not in set(columns)


def test_item_text_migration_logs_items_as_data_and_keeps_upserted_items(scratch_engine: Engine) -> None:
    _migrate(scratch_engine, "0006_session_rank_offset")
    with scratch_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO item_changes (item_id, operation, content) VALUES "
                "('a', 'upsert', 'a text'), ('b', 'delete', NULL)"
            )
        )

    _migrate(scratch_engine, "0007_item_text_upserted_items")
    with scratch_engine.begin() as connection:
        logged = connection.execute(text("SELECT item_id, data FROM item_changes ORDER BY item_id")).all()
        connection.execute(
            text("INSERT INTO item_changes (item_id, operation, data) VALUES ('c', 'upsert', CAST(:data AS jsonb))"),
            {"data": '{"name": "Kettle", "sku": "", "description": "boils"}'},
        )
        with pytest.raises(Exception, match="ck_upserted_item_has_data"), connection.begin_nested():
            connection.execute(text("INSERT INTO upserted_items (item_id) VALUES ('x')"))
    assert [tuple(row) for row in logged] == [("a", "a text"), ("b", None)]  # a logged text is a JSON string

    _migrate(scratch_engine, "0006_session_rank_offset", "downgrade")
    with scratch_engine.connect() as connection:
        contents = dict(connection.execute(text("SELECT item_id, content FROM item_changes")).all())
        tables = set(connection.execute(text("SELECT tablename FROM pg_tables")).scalars())
    assert contents == {"a": "a text", "b": None, "c": "Kettle. boils"} and "upserted_items" not in tables
