"""The unchecked autocommit pools: no ping per checkout, one retry when a connection died."""

from __future__ import annotations

import psycopg
import pytest

from embedding_studio.db.pool import autocommit_pool, current_conninfo, run_idempotent

pytestmark = pytest.mark.integration


def test_a_connection_killed_by_the_server_costs_one_retry(database_url: str) -> None:
    pool = autocommit_pool("test-retry-after-kill")
    # Let the pool open its one connection first: a checkout that has to wait for it makes the pool grow a
    # second one, and the next checkout would then get the live one instead of the killed one.
    pool.wait()
    assert pool.get_stats()["pool_size"] == 1
    with pool.connection() as connection:
        dead_pid = connection.info.backend_pid
    with psycopg.connect(current_conninfo(), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [dead_pid]).fetchone() == (True,)

    backends: list[int] = []

    def work(connection: psycopg.Connection) -> int:
        backends.append(connection.info.backend_pid)
        return connection.execute("SELECT 41 + 1").fetchone()[0]

    assert run_idempotent(pool, work) == 42
    assert backends[0] == dead_pid and len(backends) == 2 and backends[1] != dead_pid


def test_errors_that_are_not_about_the_connection_are_not_retried(database_url: str) -> None:
    calls = []

    def work(connection: psycopg.Connection) -> None:
        calls.append(1)
        connection.execute("SELECT * FROM no_such_table")

    with pytest.raises(psycopg.errors.UndefinedTable):
        run_idempotent(autocommit_pool("test-no-retry"), work)
    assert len(calls) == 1


def test_pool_connections_are_in_autocommit_mode(database_url: str) -> None:
    with autocommit_pool("test-autocommit").connection() as connection:
        assert connection.autocommit is True
