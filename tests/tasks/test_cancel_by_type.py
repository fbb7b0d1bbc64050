"""A fine-tuning task the pipeline stops on its cancel flag ends ``canceled``: the worker recognises the
pipeline's ``FineTuningCanceled`` by its type (turned into ``TaskCanceledError`` where it calls the pipeline),
and any other error still fails the task."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from embedding_studio.tasks import FineTuningTaskParams, TaskKind, TaskStatus
from embedding_studio.tasks.workers import TaskWorkers

if TYPE_CHECKING:
    from embedding_studio.tasks.repository import TaskRepository
    from embedding_studio.vectordb import VectorStore


def _pending_task(tasks: TaskRepository) -> str:
    params = FineTuningTaskParams(batch_id=1)
    task, _ = tasks.create_task(TaskKind.fine_tuning, params.model_dump(mode="json"))
    return task.id


@pytest.fixture()
def no_shared_trials(clean_db: str, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("EMBEDDING_STUDIO_HPO_SHARE_TRIALS", "false")  # no study or trial jobs for a fake pipeline
    return monkeypatch


def test_the_pipelines_cancellation_ends_the_task_canceled(
    no_shared_trials: pytest.MonkeyPatch, task_repository: TaskRepository, vector_store: VectorStore
) -> None:
    from embedding_studio import finetuning
    from embedding_studio.finetuning.errors import FineTuningCanceled

    def canceled(*_: object, **__: object) -> None:
        raise FineTuningCanceled(2)

    no_shared_trials.setattr(finetuning, "run_fine_tuning", canceled)
    task_id = _pending_task(task_repository)
    # a cancellation is an outcome, not a failure
    TaskWorkers(task_repository, vector_store).fine_tuning_worker(task_id)
    task = task_repository.get_task(task_id)
    assert task.status is TaskStatus.canceled
    assert task.error == "fine-tuning was canceled after 2 finished trials"


def test_another_error_of_the_pipeline_still_fails_the_task(
    no_shared_trials: pytest.MonkeyPatch, task_repository: TaskRepository, vector_store: VectorStore
) -> None:
    from embedding_studio import finetuning
    from embedding_studio.finetuning.errors import NoClicksError

    def no_clicks(*_: object, **__: object) -> None:
        raise NoClicksError(1, session_count=3)

    no_shared_trials.setattr(finetuning, "run_fine_tuning", no_clicks)
    task_id = _pending_task(task_repository)
    with pytest.raises(NoClicksError):
        TaskWorkers(task_repository, vector_store).fine_tuning_worker(task_id)
    assert task_repository.get_task(task_id).status is TaskStatus.failed
