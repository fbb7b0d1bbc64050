"""Where a CLI user sees the deployment gate's verdict: ``finetune --follow``, ``tasks show|list``, ``status``.

In-process against the real embedded PostgreSQL; the fine-tuning job runs the real worker function with
the pipeline replaced by a fake returning chosen figures (tests/tasks/fake_pipeline.py).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner

from embedding_studio.cli.main import app

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.fake_pipeline import FakePipeline, FakeResult  # noqa: E402
from tasks.worker_process import clear_queue, write_catalog  # noqa: E402

if TYPE_CHECKING:
    from embedding_studio.clickstream.dao import ClickstreamRepository
    from embedding_studio.tasks.repository import TaskRepository
    from embedding_studio.vectordb import VectorStore

pytestmark = pytest.mark.integration

runner = CliRunner()
NOT_DEPLOYED = "not deployed: NDCG@10 0.4100 against blue 0.4300"


def _flat(output: str) -> str:
    """Rich wraps long lines at the terminal width; compare text with single spaces."""
    return " ".join(output.split())


@pytest.fixture()
def blue(clean_db: str, tmp_path: Path, vector_store: VectorStore) -> Iterator[str]:
    from embedding_studio.models.tiny import tiny_model_directory
    from embedding_studio.tasks import LoaderSpec, index_catalog

    clear_queue()
    model = str(tiny_model_directory(tmp_path / "tiny", seed=0, dim=32))
    catalog = write_catalog(tmp_path / "corpus.jsonl", 12)
    index_catalog(model, LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)}), store=vector_store)
    yield model
    clear_queue()


def _released_batch(clickstream: ClickstreamRepository) -> int:
    clickstream.add_session(session_id="s1", query="water", results=["item-1", "item-2"])
    clickstream.add_events("s1", [{"event_id": "e1", "item_id": "item-2"}])
    return int(clickstream.release_batch().released_batch_id)


def _finished_fine_tuning_task(tasks: TaskRepository, deployment: dict[str, Any], message: str) -> str:
    from embedding_studio.tasks import TaskKind, TaskStatus

    task, _ = tasks.create_task(TaskKind.fine_tuning, {"batch_id": 1, "deploy_as_blue": True})
    tasks.finish_task(
        task.id,
        TaskStatus.done,
        best_run_id="f" * 32,
        result={"experiment_id": "1", "reindex_task_id": None, "deployment": deployment},
        message=message,
    )
    return task.id


def test_finetune_follow_ends_with_the_not_deployed_line_instead_of_waiting_for_a_reindex(
    blue: str,
    monkeypatch: pytest.MonkeyPatch,
    task_repository: TaskRepository,
    clickstream_repository: ClickstreamRepository,
    vector_store: VectorStore,
) -> None:
    from embedding_studio.tasks import TaskKind, TaskWorkers

    monkeypatch.setattr(
        "embedding_studio.finetuning.run_fine_tuning",
        FakePipeline(FakeResult({"val_ndcg_at_10": 0.41}, {"val_ndcg_at_10": 0.43})),
    )
    batch_id = _released_batch(clickstream_repository)

    def worker() -> None:  # what a worker process does with the job `finetune` queued
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pending = task_repository.list_tasks(kind=TaskKind.fine_tuning)
            if pending:
                TaskWorkers(task_repository, vector_store).fine_tuning_worker(pending[0].id)
                return
            time.sleep(0.1)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        result = runner.invoke(app, ["finetune", "--batch-id", str(batch_id), "--deploy-as-blue", "--follow"])
    finally:
        thread.join(timeout=60)
    output = _flat(result.output)
    assert result.exit_code == 0, result.output
    assert output.endswith(NOT_DEPLOYED), result.output
    assert "reindex task" not in output
    task = task_repository.list_tasks(kind=TaskKind.fine_tuning)[0]
    assert task.params["force_deploy"] is False and task.params["min_deploy_gain"] == 0.0


def test_finetune_passes_force_deploy_and_min_deploy_gain(
    blue: str, task_repository: TaskRepository, clickstream_repository: ClickstreamRepository
) -> None:
    from embedding_studio.tasks import TaskKind

    batch_id = _released_batch(clickstream_repository)
    command = ["finetune", "--batch-id", str(batch_id), "--deploy-as-blue", "--force-deploy"]
    result = runner.invoke(app, [*command, "--min-deploy-gain", "0.02"])
    assert result.exit_code == 0, result.output
    params = task_repository.list_tasks(kind=TaskKind.fine_tuning)[0].params
    assert params["force_deploy"] is True and params["min_deploy_gain"] == 0.02
    negative = runner.invoke(app, ["finetune", "--batch-id", str(batch_id), "--min-deploy-gain", "-1"])
    assert negative.exit_code != 0 and "min-deploy-gain" in negative.output


def test_tasks_show_list_and_status_say_whether_it_was_deployed_and_why(
    clean_db: str, task_repository: TaskRepository
) -> None:
    kept = _finished_fine_tuning_task(task_repository, {"deployed": False, "reason": NOT_DEPLOYED}, NOT_DEPLOYED)
    deployed_reason = "deployed: NDCG@10 0.4300 against blue 0.4100"
    _finished_fine_tuning_task(task_repository, {"deployed": True, "reason": deployed_reason}, deployed_reason)

    shown = runner.invoke(app, ["tasks", "show", kept])
    assert shown.exit_code == 0, shown.output
    assert f"deployment: {NOT_DEPLOYED}" in _flat(shown.output)

    listed = runner.invoke(app, ["tasks", "list"], env={"COLUMNS": "240"})
    assert listed.exit_code == 0, listed.output
    assert NOT_DEPLOYED in listed.output and deployed_reason in listed.output

    status = runner.invoke(app, ["status"], env={"COLUMNS": "240"})
    assert status.exit_code == 0, status.output
    assert f"{kept} — {NOT_DEPLOYED}" in status.output and deployed_reason in status.output
