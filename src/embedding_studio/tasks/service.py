"""Creating and sending tasks, with the checks that belong before anything is queued.

The API and the CLI both come here: an unknown or unreleased batch, or a model that does not exist, is
refused with a reason before a task exists; a reindex into a model another reindex is building is
recorded as ``refused`` unless the caller asked to wait.
"""

from __future__ import annotations

from typing import Any

from embedding_studio.tasks import queue, repository
from embedding_studio.tasks.errors import TaskError
from embedding_studio.tasks.models import check_model_exists
from embedding_studio.tasks.params import FineTuningTaskParams, ReindexTaskParams, UpsertTaskParams
from embedding_studio.tasks.types import Task, TaskKind, TaskStatus


class InvalidTaskError(TaskError):
    """The task asked for cannot run (unknown or unreleased batch, unknown method...)."""


def check_batch_is_released(batch_id: int) -> None:
    from embedding_studio.clickstream import errors as clickstream_errors
    from embedding_studio.clickstream.dao import clickstream_dao

    try:
        batch = clickstream_dao.get_batch(batch_id)
    except clickstream_errors.UnknownBatchError as error:
        raise InvalidTaskError(str(error)) from error
    if batch.status != "released":
        raise InvalidTaskError(
            f"clickstream batch {batch_id} is still {batch.status!r}: release it first with "
            "`embedding-studio clickstream release` (or POST /api/v1/clickstream/batches/release)"
        )


def check_method_exists(method: str, options: dict[str, Any] | None = None) -> None:
    from embedding_studio.finetuning.method import get_method

    try:
        get_method(method, **(options or {}))
    except Exception as error:
        raise InvalidTaskError(f"unknown fine-tuning method {method!r}: {error}") from error


def create_fine_tuning_task(params: FineTuningTaskParams, idempotency_key: str | None = None) -> tuple[Task, bool]:
    """Check, record and send a fine-tuning task; the same idempotency key gives the first task back."""
    if idempotency_key is not None:
        existing = _existing(idempotency_key, TaskKind.fine_tuning)
        if existing is not None:
            return existing, False
    check_batch_is_released(params.batch_id)
    check_method_exists(params.method, params.method_options)
    if params.embedding_model_id is not None:
        check_model_exists(params.embedding_model_id)
    task, created = repository.create_task(
        TaskKind.fine_tuning, params.model_dump(mode="json"), idempotency_key=idempotency_key
    )
    if created:
        task = queue.send_task(task)
    return task, created


def create_reindex_task(
    params: ReindexTaskParams,
    parent_id: str | None = None,
    idempotency_key: str | None = None,
    check_model: bool = True,
) -> Task:
    """Record and send a reindex task, or record it ``refused`` when another one builds the same model."""
    if idempotency_key is not None:
        existing = _existing(idempotency_key, TaskKind.reindex)
        if existing is not None:
            return existing
    if check_model:
        check_model_exists(params.dest_model_id)
        if params.source_model_id is not None:
            check_model_exists(params.source_model_id)
    stored_params = params.model_dump(mode="json")
    conflicts = repository.active_reindex_tasks(params.dest_model_id)
    if conflicts and not params.wait_on_conflict:
        task, _ = repository.create_task(
            TaskKind.reindex,
            stored_params,
            parent_id=parent_id,
            idempotency_key=idempotency_key,
            status=TaskStatus.refused,
            error=(
                f"reindex task {conflicts[0].id} into model {params.dest_model_id!r} is "
                f"{conflicts[0].status.value}; send this one with wait_on_conflict=true to run it after that one"
            ),
        )
        return task
    task, created = repository.create_task(
        TaskKind.reindex, stored_params, parent_id=parent_id, idempotency_key=idempotency_key
    )
    return queue.send_task(task) if created else task


def create_upsert_task(params: UpsertTaskParams, idempotency_key: str | None = None) -> Task:
    if not params.upserts and not params.deletes:
        raise InvalidTaskError("nothing to do: give at least one item to upsert or one item id to delete")
    task, created = repository.create_task(
        TaskKind.upsert, params.model_dump(mode="json"), idempotency_key=idempotency_key
    )
    return queue.send_task(task) if created else task


def cancel_task(task_id: str) -> Task:
    """Cancel a pending task at once (and drop its job); ask a running one to stop at its next check."""
    task = repository.request_cancel(task_id)
    if task.status is TaskStatus.canceled and task.job_id is not None:
        queue.cancel_job(task.job_id)
    return task


def _existing(idempotency_key: str, kind: TaskKind) -> Task | None:
    from embedding_studio.tasks.errors import IdempotencyConflictError

    for task in repository.list_tasks_by_idempotency_key(idempotency_key):
        if task.kind is not kind:
            raise IdempotencyConflictError(
                f"idempotency key {idempotency_key!r} already belongs to {task.kind.value} task {task.id}"
            )
        return task
    return None
