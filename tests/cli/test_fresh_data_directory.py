"""Every command on a fresh data directory: it migrates, then answers or explains, and never shows a traceback.

The module owns one embedded PostgreSQL in its own data directory (no DATABASE_URL). Before each command
the database is emptied down to no schema at all (no tables, no pgvector type), as on a first install,
and the process forgets its engine and pools, as a new ``embedding-studio`` process would. The last test
stops the server with ``db stop``, which is also how the module cleans up after itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embedding_studio.cli.main import app

pytestmark = pytest.mark.integration

runner = CliRunner()


def _forget_connections() -> None:
    """What a new process starts with: no settings read, no engine, no pools, no queue connector."""
    from embedding_studio.config import reset_settings
    from embedding_studio.db import dispose_engine
    from embedding_studio.db.pool import close_autocommit_pools
    from embedding_studio.tasks.queue import close_sending_apps

    close_sending_apps()
    close_autocommit_pools()
    dispose_engine()
    reset_settings()


@pytest.fixture(scope="module")
def fresh_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data_dir = tmp_path_factory.mktemp("fresh-data-dir")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMBEDDING_STUDIO_DATA_DIR", str(data_dir))
        for name in ("DATABASE_URL", "EMBEDDING_STUDIO_DATABASE_URL"):
            patch.delenv(name, raising=False)
        _forget_connections()
        try:
            yield data_dir
        finally:
            from embedding_studio.db.embedded import embedded_server_state, stop_embedded_postgres

            _forget_connections()
            if embedded_server_state(data_dir / "pgdata").running:  # a test failed before `db stop`
                stop_embedded_postgres(data_dir / "pgdata")
    _forget_connections()


def _empty_database() -> None:
    """Drop every table, type and extension the migrations made, so the next command meets a bare database."""
    from embedding_studio.db import default_database

    with default_database().transaction() as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("DROP EXTENSION IF EXISTS vector CASCADE")
        connection.execute("CREATE SCHEMA public")
    _forget_connections()


def _run(arguments: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, arguments, env={"COLUMNS": "200"})
    output = " ".join(result.output.split())  # rich wraps long lines; compare words
    assert "Traceback" not in output and "PoolTimeout" not in output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, output


def test_status_on_a_fresh_data_directory_says_the_server_is_not_running_and_does_not_start_it(
    fresh_data_dir: Path,
) -> None:
    code, output = _run(["status"])
    assert code == 0
    assert f"embedded PostgreSQL: not running (data in {fresh_data_dir / 'pgdata'})" in output
    assert not (fresh_data_dir / "pgdata" / "postmaster.pid").exists()


def _sessions_file(directory: Path) -> Path:
    path = directory / "sessions.jsonl"
    session = {"session_id": "s1", "query": "water", "results": ["a", "b"], "events": []}
    path.write_text(json.dumps(session) + "\n", encoding="utf-8")
    return path


COMMANDS: list[tuple[list[str], int, str]] = [
    # (arguments, exit code, words the answer must contain)
    (["search", "water"], 1, "embedding-studio reindex all-MiniLM-L6-v2 --deploy-as-blue"),
    (["status"], 0, "blue model: none"),
    (["tasks", "list"], 0, "no tasks"),
    (["tasks", "show", "3f9c2a"], 1, "task '3f9c2a' does not exist"),
    (["tasks", "cancel", "3f9c2a"], 1, "task '3f9c2a' does not exist"),
    (["report", "3f9c2a"], 1, "task '3f9c2a' does not exist"),
    (["models", "list"], 0, "no model has been indexed yet"),
    (["models", "rollback"], 1, "no model has been deployed yet"),
    (["clickstream", "stats"], 0, "collecting"),
    (["clickstream", "release"], 0, "released batch 1"),
    (["clickstream", "import", "{sessions}"], 0, "1 inserted"),
    (["finetune", "--batch-id", "1"], 1, "release it first with `embedding-studio clickstream release`"),
    (["reindex", "all-MiniLM-L6-v2"], 0, "reindex task"),
    (["db", "upgrade"], 0, "database at revision"),
]


@pytest.mark.parametrize(("arguments", "exit_code", "expected"), COMMANDS, ids=[" ".join(c[0]) for c in COMMANDS])
def test_each_command_migrates_a_bare_database_and_answers_without_a_traceback(
    fresh_data_dir: Path, arguments: list[str], exit_code: int, expected: str
) -> None:
    arguments = [argument.replace("{sessions}", str(_sessions_file(fresh_data_dir))) for argument in arguments]
    code, output = _run(arguments)
    try:
        assert code == exit_code, output
        assert expected in output
        if code == 1:
            assert output.startswith("error:") or " error: " in output, output
    finally:
        _empty_database()


def test_db_stop_stops_the_embedded_server_and_status_says_so(fresh_data_dir: Path) -> None:
    from embedding_studio.db.embedded import embedded_server_state

    pgdata = fresh_data_dir / "pgdata"
    code, output = _run(["status"])
    assert code == 0 and f"embedded PostgreSQL: running, pid {embedded_server_state(pgdata).pid}" in output
    assert "embedding-studio db stop" in output

    code, output = _run(["db", "stop"])
    assert code == 0 and "stopped the embedded PostgreSQL" in output, output
    assert not embedded_server_state(pgdata).running

    code, output = _run(["db", "stop"])
    assert code == 0 and "was not running" in output
    code, output = _run(["status"])
    assert code == 0 and "not running" in output
    assert not embedded_server_state(pgdata).running


def test_db_stop_with_database_url_explains_there_is_nothing_to_stop(
    fresh_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://someone@db.example.com/shop")
    _forget_connections()
    code, output = _run(["db", "stop"])
    _forget_connections()
    assert code == 1 and "DATABASE_URL is set" in output
