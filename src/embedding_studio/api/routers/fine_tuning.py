"""Fine-tuning tasks: create (checked, idempotent), read, list, cancel."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from embedding_studio.api.errors import UnprocessableRequestError
from embedding_studio.api.schemas.errors import INVALID_REQUEST, body_error_responses, error_responses
from embedding_studio.api.schemas.tasks import (
    FineTuningTaskIn,
    TaskCreatedOut,
    TaskListOut,
    TaskOut,
    task_out,
    task_outs,
)
from embedding_studio.serving import UnknownModelError
from embedding_studio.tasks import (
    IdempotencyConflictError,
    TaskKind,
    TaskStateError,
    TaskStatus,
    UnknownTaskError,
    repository,
    service,
)
from embedding_studio.tasks.service import InvalidTaskError

router = APIRouter(prefix="/fine-tuning", tags=["fine-tuning"])

UNKNOWN_TASK = "No task of this kind with this id."
TASK_STATE = "The task's state does not allow it (e.g. it has already finished)."
IDEMPOTENCY_CONFLICT = "The idempotency key already belongs to a task of another kind."

#: Task ids are 32 hex characters; the bound only keeps absurd paths out of the database query.
TaskId = Annotated[str, Path(min_length=1, max_length=100, description="A task id, as answered when it was created.")]
TASK_ERRORS = error_responses({404: UNKNOWN_TASK, 422: INVALID_REQUEST})
CANCEL_ERRORS = error_responses({404: UNKNOWN_TASK, 409: TASK_STATE, 422: INVALID_REQUEST})


@contextmanager
def task_errors() -> Iterator[None]:
    """Task-layer errors as HTTP answers with the reason (shared by the task routers)."""
    try:
        yield
    except UnknownTaskError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from error
    except InvalidTaskError as error:
        raise UnprocessableRequestError(str(error), field=error.field) from error
    except UnknownModelError as error:
        raise UnprocessableRequestError(str(error)) from error
    except (IdempotencyConflictError, TaskStateError) as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from error


def task_created_responses(invalid_also: str) -> dict[int | str, dict[str, Any]]:
    """What a task-creating route answers besides 202: the task again for a reused idempotency key, a conflicting
    key, and the request errors (``invalid_also`` says what else the route refuses as 422)."""
    return {
        200: {"description": "The idempotency key was used before: its task is given back.", "model": TaskCreatedOut},
        **body_error_responses({409: IDEMPOTENCY_CONFLICT, 422: f"{INVALID_REQUEST} Also {invalid_also}"}),
    }


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
def create_fine_tuning_task(body: FineTuningTaskIn, response: Response) -> TaskCreatedOut:
    """Fine-tune on released batches (``batch_id``, ``batch_ids``, or ``since_blue``: every batch released after
    the newest one the blue model was trained on), older batches' sessions replayed by ``replay_share``.
    With ``deploy_as_blue`` the best model is reindexed and deployed when it retrieves at least as well as the
    blue one on the held-out sessions (by ``min_deploy_gain``), or with ``force_deploy``. Otherwise the task ends
    ``done`` and its ``deployment`` says why it was not deployed."""
    with task_errors():
        task, created = service.create_fine_tuning_task(body.params(), idempotency_key=body.idempotency_key)
    if not created:
        response.status_code = status.HTTP_200_OK
    return TaskCreatedOut(id=task.id, status=task.status.value, error=task.error)


@router.get("/tasks/{task_id}", response_model=TaskOut, responses=TASK_ERRORS)
def get_fine_tuning_task(task_id: TaskId) -> TaskOut:
    with task_errors():
        return task_out(repository.get_task(task_id, kind=TaskKind.fine_tuning))


@router.get("/tasks", response_model=TaskListOut, responses=error_responses({422: INVALID_REQUEST}))
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
    return TaskListOut(tasks=task_outs(tasks))


@router.post("/tasks/{task_id}/cancel", response_model=TaskOut, responses=CANCEL_ERRORS)
def cancel_fine_tuning_task(task_id: TaskId) -> TaskOut:
    """A pending task is canceled at once; a running one stops at its next check (``cancel_requested``)."""
    with task_errors():
        repository.get_task(task_id, kind=TaskKind.fine_tuning)
        return task_out(service.cancel_task(task_id))
