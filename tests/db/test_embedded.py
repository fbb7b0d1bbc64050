"""The embedded server starts with the project's settings, from its first start on."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedding_studio.db import Database
from embedding_studio.db.embedded import SETTINGS_FILE, embedded_server_settings, open_embedded_server

pytestmark = pytest.mark.integration


def test_the_session_server_runs_with_the_embedded_settings(database: Database) -> None:
    """conftest started it through `open_embedded_server` on a fresh data directory: no restart needed."""
    with database.connection() as connection:
        for name, value in embedded_server_settings().items():  # memory sizes: compared in bytes ('2GB' = '2048MB')
            row = connection.execute(
                "SELECT pg_size_bytes(current_setting(%(name)s)) = pg_size_bytes(%(value)s)",
                {"name": name, "value": value},
            ).fetchone()
            assert row is not None and row[0], f"{name} is not {value}"


def test_opening_the_server_again_in_the_process_returns_the_running_one(database_url: str, es_data_dir: Path) -> None:
    pgdata = es_data_dir / "pg"
    first = open_embedded_server(pgdata, cleanup_mode="stop")
    assert open_embedded_server(pgdata, cleanup_mode="stop") is first
    conf = (pgdata / "postgresql.conf").read_text(encoding="utf-8")
    assert conf.count(f"include_if_exists = '{SETTINGS_FILE}'") == 1


def test_shared_buffers_are_a_quarter_of_memory_within_bounds() -> None:
    megabytes = int(embedded_server_settings()["shared_buffers"].removesuffix("MB"))
    assert 128 <= megabytes <= 2048
