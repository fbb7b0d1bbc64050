"""Reindex tasks: embed the catalog with a model into a new collection, optionally deploying it."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from embedding_studio.api.routers.fine_tuning import (
    CANCEL_ERRORS,
    TASK_ERRORS,
    TaskId,
    task_created_responses,
    task_errors,
)
from embedding_studio.api.schemas.tasks import ReindexTaskIn, TaskCreatedOut, TaskOut
from embedding_studio.tasks import TaskKind, repository, service

router = APIRouter(prefix="/reindex", tags=["reindex"])


@router.post(
    "/tasks",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskCreatedOut,
    responses=task_created_responses("when dest_model_id or source_model_id names no model."),
)
def create_reindex_task(body: ReindexTaskIn, response: Response) -> TaskCreatedOut:
    """A reindex into a model another reindex is building comes back ``refused`` (with the reason)
    unless ``wait_on_conflict`` is set, in which case it runs after that one."""
    with task_errors():
        existing = repository.list_tasks_by_idempotency_key(body.idempotency_key) if body.idempotency_key else []
        task = service.create_reindex_task(body.params(), idempotency_key=body.idempotency_key)
    if existing:
        response.status_code = status.HTTP_200_OK
    return TaskCreatedOut(id=task.id, status=task.status.value, error=task.error)


@router.get("/tasks/{task_id}", response_model=TaskOut, responses=TASK_ERRORS)
def get_reindex_task(task_id: TaskId) -> TaskOut:
    with task_errors():
        return TaskOut.of(repository.get_task(task_id, kind=TaskKind.reindex))


@router.post("/tasks/{task_id}/cancel", response_model=TaskOut, responses=CANCEL_ERRORS)
def cancel_reindex_task(task_id: TaskId) -> TaskOut:
    with task_errors():
        repository.get_task(task_id, kind=TaskKind.reindex)
        return TaskOut.of(service.cancel_task(task_id))
