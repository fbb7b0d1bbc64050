"""Item upserts and deletes, applied by the upsert worker to every serving collection (and to the
ones being built, through the change log), so search reflects them whatever reindex is running."""

from __future__ import annotations

from fastapi import APIRouter, status

from embedding_studio.api.routers.fine_tuning import task_errors
from embedding_studio.api.schemas.tasks import DeleteIn, TaskCreatedOut, TaskOut, UpsertIn
from embedding_studio.tasks import TaskKind, repository, service

router = APIRouter(prefix="/items", tags=["items"])


@router.post("/upsert", status_code=status.HTTP_202_ACCEPTED, response_model=TaskCreatedOut)
def upsert_items(body: UpsertIn) -> TaskCreatedOut:
    with task_errors():
        task = service.create_upsert_task(body.params(), idempotency_key=body.idempotency_key)
    return TaskCreatedOut(id=task.id, status=task.status.value, error=task.error)


@router.post("/delete", status_code=status.HTTP_202_ACCEPTED, response_model=TaskCreatedOut)
def delete_items(body: DeleteIn) -> TaskCreatedOut:
    with task_errors():
        task = service.create_upsert_task(body.params(), idempotency_key=body.idempotency_key)
    return TaskCreatedOut(id=task.id, status=task.status.value, error=task.error)


@router.get("/tasks/{task_id}", response_model=TaskOut)
def get_upsert_task(task_id: str) -> TaskOut:
    with task_errors():
        return TaskOut.of(repository.get_task(task_id, kind=TaskKind.upsert))
