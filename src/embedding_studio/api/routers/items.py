"""Item upserts and deletes, applied by the upsert worker to every serving collection (and to the
ones being built, through the change log), so search reflects them whatever reindex is running."""

from __future__ import annotations

from fastapi import APIRouter, status

from embedding_studio.api.deps import TaskId, Tasks
from embedding_studio.api.errors import IDEMPOTENCY_CONFLICT, TASK_ERRORS
from embedding_studio.api.schemas.errors import INVALID_REQUEST, body_error_responses
from embedding_studio.api.schemas.tasks import DeleteIn, TaskCreatedOut, TaskOut, UpsertIn, task_out
from embedding_studio.tasks import TaskKind
from embedding_studio.tasks.service import TaskService

router = APIRouter(prefix="/items", tags=["items"])

_CHANGE_ERRORS = body_error_responses({409: IDEMPOTENCY_CONFLICT, 422: INVALID_REQUEST})


@router.post("/upsert", status_code=status.HTTP_202_ACCEPTED, response_model=TaskCreatedOut, responses=_CHANGE_ERRORS)
def upsert_items(body: UpsertIn, tasks: Tasks) -> TaskCreatedOut:
    task = TaskService(tasks).create_upsert_task(body.params(), idempotency_key=body.idempotency_key)
    return TaskCreatedOut(id=task.id, status=task.status.value, error=task.error)


@router.post("/delete", status_code=status.HTTP_202_ACCEPTED, response_model=TaskCreatedOut, responses=_CHANGE_ERRORS)
def delete_items(body: DeleteIn, tasks: Tasks) -> TaskCreatedOut:
    task = TaskService(tasks).create_upsert_task(body.params(), idempotency_key=body.idempotency_key)
    return TaskCreatedOut(id=task.id, status=task.status.value, error=task.error)


@router.get("/tasks/{task_id}", response_model=TaskOut, responses=TASK_ERRORS)
def get_upsert_task(task_id: TaskId, tasks: Tasks) -> TaskOut:
    return task_out(tasks.database, tasks.get_task(task_id, kind=TaskKind.upsert))
