"""``embedding-studio search``: through a running API that serves the same database, else in this process with
where the time went; results show their title and snippet, the table a model name a person knows."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from embedding_studio.cli.main import app

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.worker_process import write_catalog  # noqa: E402

if TYPE_CHECKING:
    from embedding_studio.clickstream.dao import ClickstreamRepository
    from embedding_studio.db import Database
    from embedding_studio.tasks.repository import TaskRepository
    from embedding_studio.vectordb import VectorStore

runner = CliRunner()


def _said(result: object) -> str:
    """The output with its line wrapping undone (rich wraps at the terminal's width)."""
    return " ".join(str(getattr(result, "output", "")).split())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture()
def indexed(
    clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vector_store: VectorStore
) -> tuple[str, dict[str, str]]:
    """A tiny model indexed from a titled catalog; the settings' API port is one nothing listens on."""
    from embedding_studio.config import reset_settings
    from embedding_studio.models.tiny import tiny_model_directory
    from embedding_studio.tasks import LoaderSpec, index_catalog

    monkeypatch.setenv("EMBEDDING_STUDIO_API_PORT", str(_free_port()))
    reset_settings()
    catalog = write_catalog(tmp_path / "corpus.jsonl", 20)
    model = str(tiny_model_directory(tmp_path / "tiny", seed=0))
    index_catalog(model, LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)}), store=vector_store)
    line = json.loads(catalog.read_text().splitlines()[3])
    yield model, line
    reset_settings()


@pytest.fixture()
def api_url(indexed: tuple[str, dict[str, str]]) -> Iterator[str]:
    """The real API on uvicorn in a thread, on the test database."""
    import uvicorn

    from embedding_studio.api.app import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(run_migrations=False), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_without_an_api_it_searches_here_and_says_where_the_time_went(indexed: tuple[str, dict[str, str]]) -> None:
    model, line = indexed
    result = runner.invoke(app, ["search", line["text"], "--limit", "3"], terminal_width=200)
    assert result.exit_code == 0, result.output
    said = _said(result)
    assert f"model {model}" in said  # a base model or path is named as it is
    assert line["title"] in said and line["text"][:20] in said  # title and snippet, not just ids
    assert "answered in this process in" in said
    for step in ("database", "model load", "query embed", "search"):
        assert f"{step} " in said, step
    assert "no API answers at http://127.0.0.1:" in said and "`embedding-studio serve`" in said


def test_a_running_api_on_the_same_database_answers_and_records_only_when_asked(
    indexed: tuple[str, dict[str, str]], api_url: str, clickstream_repository: ClickstreamRepository
) -> None:
    _, line = indexed
    result = runner.invoke(app, ["search", line["text"], "--limit", "3", "--api", api_url], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert f"answered by the API at {api_url}" in _said(result) and "model load" not in _said(result)
    assert line["title"] in _said(result)
    recorded = runner.invoke(app, ["search", line["text"], "--api", api_url, "--record"], terminal_width=200)
    assert recorded.exit_code == 0, recorded.output
    session_id = recorded.output.strip().splitlines()[-1].removeprefix("session ")
    assert clickstream_repository.get_session(session_id).query == line["text"]
    # --local skips the API, and says nothing about it.
    local = runner.invoke(app, ["search", "x", "--api", api_url, "--local"], terminal_width=200)
    assert "answered in this process" in _said(local) and "API" not in _said(local)


def test_an_api_serving_another_database_is_not_asked(
    indexed: tuple[str, dict[str, str]], api_url: str, monkeypatch: pytest.MonkeyPatch, database: Database
) -> None:
    from embedding_studio import db

    class AnotherDatabase(db.Database):
        def fingerprint(self) -> str:
            return "another-database"

    another = AnotherDatabase(database.conninfo)  # the command's database, as another data directory's would be
    monkeypatch.setattr("embedding_studio.cli.search.prepare_database", lambda: another)
    try:
        result = runner.invoke(app, ["search", "water", "--api", api_url], terminal_width=200)
    finally:
        another.close()
    assert result.exit_code == 0, result.output
    assert f"the API at {api_url} serves another database" in _said(result)
    assert "answered in this process" in _said(result)


def test_a_fine_tuned_model_is_titled_by_what_it_was_trained_from_and_on(
    clean_db: str, task_repository: TaskRepository
) -> None:
    from embedding_studio.cli.search import model_title
    from embedding_studio.tasks.types import TaskKind, TaskStatus

    run_id = "7b4dda0584" + "0" * 22
    assert model_title(task_repository, run_id) == "fine-tuned model (MLflow run 7b4dda05)"  # no task knows it
    task, _ = task_repository.create_task(TaskKind.fine_tuning, {"batch_id": 2})
    task_repository.finish_task(
        task.id, TaskStatus.done, best_run_id=run_id, result={"start_model_id": "all-MiniLM-L6-v2"}
    )
    title = model_title(task_repository, run_id)
    assert title.startswith("fine-tuned all-MiniLM-L6-v2 on batch 2 (MLflow run 7b4dda05, ")
    assert model_title(task_repository, "all-MiniLM-L6-v2") == "model all-MiniLM-L6-v2"
