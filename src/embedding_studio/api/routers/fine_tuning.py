"""Fine-tuning tasks: create (checked, idempotent), read, list, cancel."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter, HTTPException, Query, Response, status

from embedding_studio.api.schemas.tasks import FineTuningTaskIn, TaskCreatedOut, TaskListOut, TaskOut
from embedding_studio.tasks import (
    IdempotencyConflictError,
    TaskKind,
    TaskStateError,
    TaskStatus,
    UnknownModelError,
    UnknownTaskError,
    repository,
    service,
)
from embedding_studio.tasks.service import InvalidTaskError

router = APIRouter(prefix="/fine-tuning", tags=["fine-tuning"])


@contextmanager
def task_errors() -> Iterator[None]:
    """Task-layer errors as HTTP answers with the reason (shared by the task routers)."""
    try:
        yield
    except UnknownTaskError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from error
    except (UnknownModelError, InvalidTaskError) as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from error
    except (IdempotencyConflictError, TaskStateError) as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from error


@router.post("/tasks", status_code=status.HTTP_202_ACCEPTED, response_model=TaskCreatedOut)
def create_fine_tuning_task(body: FineTuningTaskIn, response: Response) -> TaskCreatedOut:
    """Fine-tune on a released batch; with ``deploy_as_blue`` the best model is reindexed and deployed when it
    retrieves at least as well as the blue one on the batch's held-out sessions (by ``min_deploy_gain``), or
    with ``force_deploy``. Otherwise the task ends ``done`` and its ``deployment`` says why it was not deployed."""
    with task_errors():
        task, created = service.create_fine_tuning_task(body.params(), idempotency_key=body.idempotency_key)
    if not created:
        response.status_code = status.HTTP_200_OK
    return TaskCreatedOut(id=task.id, status=task.status.value, error=task.error)


@router.get("/tasks/{task_id}", response_model=TaskOut)
def get_fine_tuning_task(task_id: str) -> TaskOut:
    with task_errors():
        return TaskOut.of(repository.get_task(task_id, kind=TaskKind.fine_tuning))


@router.get("/tasks", response_model=TaskListOut)
def list_fine_tuning_tasks(
    status_filter: TaskStatus | None = Query(default=None, alias="status"),
    limit: int = Query(default=50, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
) -> TaskListOut:
    tasks = repository.list_tasks(
        kind=TaskKind.fine_tuning,
        statuses=[status_filter] if status_filter else None,
        limit=limit,
        offset=offset,
    )
    return TaskListOut(tasks=[TaskOut.of(task) for task in tasks])


@router.post("/tasks/{task_id}/cancel", response_model=TaskOut)
def cancel_fine_tuning_task(task_id: str) -> TaskOut:
    """A pending task is canceled at once; a running one stops at its next check (``cancel_requested``)."""
    with task_errors():
        repository.get_task(task_id, kind=TaskKind.fine_tuning)
        return TaskOut.of(service.cancel_task(task_id))
