"""Test-session fixtures: one real embedded PostgreSQL (pgvector) for the whole run.

Tests talk to the real server; each test that writes gets a clean schema through ``clean_db``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from embedding_studio.clickstream.dao import ClickstreamRepository
    from embedding_studio.db import Database
    from embedding_studio.tasks.repository import TaskRepository
    from embedding_studio.vectordb import VectorStore

# Tests never reach a model hub; everything they load is built in code or shipped in a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def es_data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="es-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(es_data_dir: Path) -> Iterator[str]:
    """Start one embedded PostgreSQL for the test session and point the settings at it."""
    from embedding_studio.config import reset_settings
    from embedding_studio.db import dispose_engine, upgrade_database
    from embedding_studio.db.embedded import open_embedded_server
    from embedding_studio.db.engine import normalize_database_url

    server = open_embedded_server(es_data_dir / "pg", cleanup_mode="stop")
    url = normalize_database_url(server.get_uri())
    previous = {key: os.environ.get(key) for key in ("DATABASE_URL", "EMBEDDING_STUDIO_DATA_DIR")}
    os.environ["DATABASE_URL"] = url
    os.environ["EMBEDDING_STUDIO_DATA_DIR"] = str(es_data_dir)
    reset_settings()
    dispose_engine()
    upgrade_database()
    yield url
    dispose_engine()
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    reset_settings()
    server.cleanup()


@pytest.fixture()
def database(database_url: str) -> Database:
    """The test server's ``Database``, to hand to a repository (the process's default one, which the app and the
    CLI the tests drive use too; asked for per test, since a test that swaps settings closes it)."""
    from embedding_studio.db import default_database

    return default_database()


@pytest.fixture()
def task_repository(database: Database) -> TaskRepository:
    """The task table of the test server."""
    from embedding_studio.tasks.repository import TaskRepository

    return TaskRepository(database)


@pytest.fixture()
def clickstream_repository(database: Database) -> ClickstreamRepository:
    """The clickstream tables of the test server."""
    from embedding_studio.clickstream.dao import ClickstreamRepository

    return ClickstreamRepository(database)


@pytest.fixture()
def vector_store(database: Database) -> VectorStore:
    """The vector store of the test server."""
    from embedding_studio.vectordb import VectorStore

    return VectorStore(database)


@pytest.fixture()
def clean_db(database_url: str, database: Database) -> Iterator[str]:
    """Empty every product table (keeping the schema) so a test starts from a fresh install."""
    with database.transaction() as connection:
        tables = [
            row[0]
            for row in connection.execute(
                "select tablename from pg_tables where schemaname = 'public' "
                "and tablename <> 'alembic_version' and tablename not like 'procrastinate%'"
            )
        ]
        if tables:
            connection.execute("TRUNCATE " + ", ".join(f'"{name}"' for name in tables) + " CASCADE")
        connection.execute("INSERT INTO clickstream_batches (status) VALUES ('collecting')")
        connection.execute("INSERT INTO deployment (id) VALUES (1)")
    yield database_url
