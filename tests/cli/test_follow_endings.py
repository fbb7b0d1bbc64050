"""``--follow`` ends by saying what happened, and a finished task's last message is its outcome, not a step.

The reindex runs the real worker function on a tiny model in a thread, as a worker process would.
"""

from __future__ import annotations

import json
import re
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

from tasks.worker_process import clear_queue, write_catalog  # noqa: E402

if TYPE_CHECKING:
    from embedding_studio.tasks.repository import TaskRepository

pytestmark = pytest.mark.integration

runner = CliRunner()


def _flat(output: str) -> str:
    return " ".join(output.split())


@pytest.fixture()
def queue(clean_db: str) -> Iterator[None]:
    clear_queue()
    yield
    clear_queue()


def _run_next_reindex_in_a_thread(tasks: TaskRepository) -> threading.Thread:
    """What a worker does with the job `reindex` queues: take the pending task and run it."""
    from embedding_studio.tasks import TaskKind, TaskStatus, TaskWorkers
    from embedding_studio.vectordb import VectorStore

    workers = TaskWorkers(tasks, VectorStore(tasks.database))

    def work() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pending = tasks.list_tasks(kind=TaskKind.reindex, statuses=[TaskStatus.pending])
            if pending:
                workers.reindex_worker(pending[0].id)
                return
            time.sleep(0.1)

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def test_reindex_follow_ends_with_the_model_search_now_answers_from(
    queue: None, tmp_path: Path, task_repository: TaskRepository
) -> None:
    from embedding_studio.models.tiny import tiny_model_directory
    from embedding_studio.tasks import TaskKind

    model = str(tiny_model_directory(tmp_path / "tiny", seed=0, dim=32))
    catalog = write_catalog(tmp_path / "corpus.jsonl", 12)
    thread = _run_next_reindex_in_a_thread(task_repository)
    try:
        result = runner.invoke(
            app,
            [
                "reindex",
                model,
                "--loader",
                "jsonl_catalog",
                "--loader-options",
                json.dumps({"path": str(catalog)}),
                "--deploy-as-blue",
                "--follow",
            ],
            env={"COLUMNS": "400"},
        )
    finally:
        thread.join(timeout=90)
    output = _flat(result.output)
    assert result.exit_code == 0, result.output
    ending = rf"search now answers from model {re.escape(model)}: 12 items \(12 parts\), indexed in [0-9.]+s$"
    assert re.search(ending, output), output

    task = task_repository.list_tasks(kind=TaskKind.reindex)[0]
    assert task.progress_message and task.progress_message.startswith("search now answers from model")
    listed = runner.invoke(app, ["tasks", "list"], env={"COLUMNS": "400"})
    assert "search now answers from model" in listed.output and "applying item changes" not in listed.output


def test_a_task_ending_with_an_error_says_so_as_its_last_message(
    clean_db: str, task_repository: TaskRepository
) -> None:
    from embedding_studio.tasks import TaskKind, TaskStatus

    task, _ = task_repository.create_task(TaskKind.reindex, {"dest_model_id": "m", "deploy_as_blue": True})
    task_repository.set_progress(task.id, 0.9, "applying item changes that arrived during the reindex")
    task_repository.finish_task(task.id, TaskStatus.failed, error="OSError: disk full\nmore detail")
    assert task_repository.get_task(task.id).progress_message == "failed: OSError: disk full"


def test_status_shortens_long_messages_at_a_word_boundary(clean_db: str, task_repository: TaskRepository) -> None:
    from embedding_studio.tasks import TaskKind, TaskStatus

    task, _ = task_repository.create_task(TaskKind.reindex, {"dest_model_id": "m"})
    task_repository.finish_task(task.id, TaskStatus.failed, error="the loader could not read " + "catalogue " * 20)
    result = runner.invoke(app, ["status"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if task.id in line)
    assert line.rstrip().endswith("catalogue …"), line
