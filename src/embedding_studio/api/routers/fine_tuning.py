"""Fine-tuning tasks: create (checked, idempotent), read, list, cancel. Errors answer through ``api.errors``."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response, status

from embedding_studio.api.deps import TaskId, Tasks
from embedding_studio.api.errors import CANCEL_ERRORS, TASK_ERRORS, task_created_responses
from embedding_studio.api.schemas.errors import INVALID_REQUEST, error_responses
from embedding_studio.api.schemas.tasks import (
    FineTuningTaskIn,
    TaskCreatedOut,
    TaskListOut,
    TaskOut,
    task_out,
    task_outs,
)
from embedding_studio.tasks import TaskKind, TaskStatus
from embedding_studio.tasks.service import TaskService

router = APIRouter(prefix="/fine-tuning", tags=["fine-tuning"])


@router.post(
    "/tasks",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskCreatedOut,
    responses=task_created_responses(
        "when not exactly one of batch_id, batch_ids and since_blue is given; for a batch that does not exist or "
        "is not released (`errors[0].field` is batch_id or batch_ids, the reason names the batch and the command "
        "`embedding-studio clickstream release`); for since_blue with no batch released since the blue model's "
        "newest; for an unknown method or method option, or an embedding_model_id that names no model."
    ),
)
def create_fine_tuning_task(body: FineTuningTaskIn, response: Response, tasks: Tasks) -> TaskCreatedOut:
    """Fine-tune on released batches (``batch_id``, ``batch_ids``, or ``since_blue``: every batch released after
    the newest one the blue model was trained on), older batches' sessions replayed by ``replay_share``.
    With ``deploy_as_blue`` the best model is reindexed and deployed when it retrieves at least as well as the
    blue one on the held-out sessions (by ``min_deploy_gain``), or with ``force_deploy``. Otherwise the task ends
    ``done`` and its ``deployment`` says why it was not deployed."""
    task, created = TaskService(tasks).create_fine_tuning_task(body.params(), idempotency_key=body.idempotency_key)
    if not created:
        response.status_code = status.HTTP_200_OK
    return TaskCreatedOut(id=task.id, status=task.status.value, error=task.error)


@router.get("/tasks/{task_id}", response_model=TaskOut, responses=TASK_ERRORS)
def get_fine_tuning_task(task_id: TaskId, tasks: Tasks) -> TaskOut:
    return task_out(tasks.database, tasks.get_task(task_id, kind=TaskKind.fine_tuning))


@router.get("/tasks", response_model=TaskListOut, responses=error_responses({422: INVALID_REQUEST}))
def list_fine_tuning_tasks(
    tasks: Tasks,
    status_filter: TaskStatus | None = Query(default=None, alias="status"),
    limit: int = Query(default=50, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
) -> TaskListOut:
    listed = tasks.list_tasks(
        kind=TaskKind.fine_tuning,
        statuses=[status_filter] if status_filter else None,
        limit=limit,
        offset=offset,
    )
    return TaskListOut(tasks=task_outs(tasks.database, listed))


@router.post("/tasks/{task_id}/cancel", response_model=TaskOut, responses=CANCEL_ERRORS)
def cancel_fine_tuning_task(task_id: TaskId, tasks: Tasks) -> TaskOut:
    """A pending task is canceled at once; a running one stops at its next check (``cancel_requested``)."""
    tasks.get_task(task_id, kind=TaskKind.fine_tuning)
    return task_out(tasks.database, TaskService(tasks).cancel_task(task_id))
