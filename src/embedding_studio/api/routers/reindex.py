"""Reindex tasks: embed the catalog with a model into a new collection, optionally deploying it."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from embedding_studio.api.deps import TaskId, Tasks
from embedding_studio.api.errors import CANCEL_ERRORS, IDEMPOTENCY_CONFLICT, TASK_ERRORS, task_created_responses
from embedding_studio.api.schemas.tasks import ReindexTaskIn, TaskCreatedOut, TaskOut, task_out
from embedding_studio.tasks import TaskKind
from embedding_studio.tasks.service import TaskService

router = APIRouter(prefix="/reindex", tags=["reindex"])

#: Everything a worker would otherwise find wrong only after the task waited in the queue is answered at once.
REINDEX_CREATED_RESPONSES = task_created_responses(
    "when dest_model_id or source_model_id names no model; when the loader's name is unknown (the known ones are "
    "listed), it does not take an option or lacks one, or a local path option (path, root, credentials_path) is "
    "relative or does not exist: `errors[0].field` names the field, e.g. loader or dest_model_id."
)
REINDEX_CREATED_RESPONSES[409] = {
    **REINDEX_CREATED_RESPONSES[409],
    "description": f"{IDEMPOTENCY_CONFLICT} Or dest_model_id is already the blue model: search reads its "
    "collection, which is never rebuilt in place.",
}


@router.post(
    "/tasks",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskCreatedOut,
    responses=REINDEX_CREATED_RESPONSES,
)
def create_reindex_task(body: ReindexTaskIn, response: Response, tasks: Tasks) -> TaskCreatedOut:
    """A reindex into a model another reindex is building comes back ``refused`` (with the reason)
    unless ``wait_on_conflict`` is set, in which case it runs after that one."""
    existing = tasks.list_tasks_by_idempotency_key(body.idempotency_key) if body.idempotency_key else []
    task = TaskService(tasks).create_reindex_task(body.params(), idempotency_key=body.idempotency_key)
    if existing:
        response.status_code = status.HTTP_200_OK
    return TaskCreatedOut(id=task.id, status=task.status.value, error=task.error)


@router.get("/tasks/{task_id}", response_model=TaskOut, responses=TASK_ERRORS)
def get_reindex_task(task_id: TaskId, tasks: Tasks) -> TaskOut:
    return task_out(tasks.database, tasks.get_task(task_id, kind=TaskKind.reindex))


@router.post("/tasks/{task_id}/cancel", response_model=TaskOut, responses=CANCEL_ERRORS)
def cancel_reindex_task(task_id: TaskId, tasks: Tasks) -> TaskOut:
    tasks.get_task(task_id, kind=TaskKind.reindex)
    return task_out(tasks.database, TaskService(tasks).cancel_task(task_id))
