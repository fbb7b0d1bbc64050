"""The task table on the real PostgreSQL: idempotency, transitions, cancel."""

from __future__ import annotations

import pytest

from embedding_studio.tasks.errors import IdempotencyConflictError, TaskStateError, UnknownTaskError
from embedding_studio.tasks.repository import MAX_ERROR_LENGTH, TaskRepository
from embedding_studio.tasks.types import TaskKind, TaskStatus


def test_the_same_idempotency_key_gives_the_same_task_back(clean_db: str, task_repository: TaskRepository) -> None:
    first, created = task_repository.create_task(TaskKind.fine_tuning, {"batch_id": 1}, idempotency_key="k1")
    again, created_again = task_repository.create_task(TaskKind.fine_tuning, {"batch_id": 2}, idempotency_key="k1")
    assert created and not created_again and again.id == first.id and again.params == {"batch_id": 1}
    with pytest.raises(IdempotencyConflictError, match="already belongs to fine_tuning task"):
        task_repository.create_task(TaskKind.reindex, {}, idempotency_key="k1")
    other, created_other = task_repository.create_task(TaskKind.fine_tuning, {"batch_id": 1})
    assert created_other and other.id != first.id


def test_a_task_goes_pending_processing_done_once(clean_db: str, task_repository: TaskRepository) -> None:
    task, _ = task_repository.create_task(TaskKind.reindex, {"dest_model_id": "m"})
    assert task.status is TaskStatus.pending and task.progress == 0
    started = task_repository.start_task(task.id)
    assert started is not None and started.status is TaskStatus.processing and started.attempts == 1
    assert task_repository.start_task(task.id) is None  # a second worker does not take it
    task_repository.set_progress(task.id, 0.5, "halfway")
    assert task_repository.get_task(task.id).progress_message == "halfway"
    done = task_repository.finish_task(task.id, TaskStatus.done, best_run_id="run", result={"items": 3})
    assert done is not None and done.progress == 1 and done.best_run_id == "run" and done.finished_at is not None
    assert task_repository.finish_task(task.id, TaskStatus.failed, error="late") is None
    assert task_repository.get_task(task.id).status is TaskStatus.done


def test_cancel_stops_a_pending_task_now_and_flags_a_processing_one(
    clean_db: str, task_repository: TaskRepository
) -> None:
    pending, _ = task_repository.create_task(TaskKind.fine_tuning, {})
    assert task_repository.request_cancel(pending.id).status is TaskStatus.canceled
    with pytest.raises(TaskStateError, match="already canceled"):
        task_repository.request_cancel(pending.id)

    running, _ = task_repository.create_task(TaskKind.fine_tuning, {})
    task_repository.start_task(running.id)
    assert not task_repository.is_cancel_requested(running.id)
    flagged = task_repository.request_cancel(running.id)
    assert flagged.status is TaskStatus.processing and flagged.cancel_requested
    assert task_repository.is_cancel_requested(running.id)


def test_unknown_tasks_and_kinds_are_named(clean_db: str, task_repository: TaskRepository) -> None:
    with pytest.raises(UnknownTaskError, match="'nope' does not exist"):
        task_repository.get_task("nope")
    task, _ = task_repository.create_task(TaskKind.upsert, {})
    with pytest.raises(UnknownTaskError):
        task_repository.get_task(task.id, kind=TaskKind.reindex)


def test_active_reindex_tasks_find_conflicts_by_destination(clean_db: str, task_repository: TaskRepository) -> None:
    first, _ = task_repository.create_task(TaskKind.reindex, {"dest_model_id": "m1"})
    task_repository.create_task(TaskKind.reindex, {"dest_model_id": "m2"})
    assert [task.id for task in task_repository.active_reindex_tasks("m1")] == [first.id]
    assert task_repository.active_reindex_tasks("m1", exclude_task_id=first.id) == []
    task_repository.finish_task(first.id, TaskStatus.failed, error="x")
    assert task_repository.active_reindex_tasks("m1") == []


def test_failed_tasks_keep_their_reason_and_listing_is_newest_first(
    clean_db: str, task_repository: TaskRepository
) -> None:
    a, _ = task_repository.create_task(TaskKind.fine_tuning, {})
    b, _ = task_repository.create_task(TaskKind.reindex, {})
    task_repository.finish_task(a.id, TaskStatus.failed, error="x" * 10000)
    assert len(task_repository.get_task(a.id).error or "") == MAX_ERROR_LENGTH
    assert [task.id for task in task_repository.list_tasks()] == [b.id, a.id]
    assert [task.id for task in task_repository.list_tasks(kind=TaskKind.fine_tuning)] == [a.id]
    assert [task.id for task in task_repository.list_tasks(statuses=[TaskStatus.pending])] == [b.id]
    assert task_repository.count_tasks_by_status() == {"failed": 1, "pending": 1}


def test_a_task_whose_sender_died_before_queuing_its_job_gets_its_job_from_the_recovery(
    clean_db: str, task_repository: TaskRepository
) -> None:
    from embedding_studio.tasks import queue
    from embedding_studio.tasks.runner import send_unsent_tasks

    orphan, _ = task_repository.create_task(TaskKind.upsert, {"upserts": [], "deletes": ["x"]})
    just_recorded, _ = task_repository.create_task(TaskKind.upsert, {"upserts": [], "deletes": ["y"]})
    with task_repository.database.connection() as connection:
        connection.execute(
            "UPDATE tasks SET created_at = now() - interval '10 minutes' WHERE id = %(id)s", {"id": orphan.id}
        )

    assert send_unsent_tasks(task_repository, older_than_s=60) == [orphan.id]
    sent = task_repository.get_task(orphan.id)
    assert sent.status is TaskStatus.pending and sent.job_id is not None
    assert task_repository.get_task(just_recorded.id).job_id is None  # its sender may still be about to queue it
    with task_repository.database.connection() as connection:
        job = connection.execute(
            "SELECT status, args->>'task_id' FROM procrastinate_jobs WHERE id = %(id)s", {"id": sent.job_id}
        ).fetchone()
    assert job is not None and tuple(job) == ("todo", orphan.id)
    assert send_unsent_tasks(task_repository, older_than_s=60) == []  # sent once
    queue.cancel_job(sent.job_id, task_repository.database)
