"""Bodies and answers of the fine-tuning, reindex, models, items and search endpoints: defined in
``embedding_studio.schemas.tasks`` (the client parses them too, without the server installed) and re-exported here,
with the server's constructors that build an answer from a stored task and its place in the queue."""

from __future__ import annotations

from embedding_studio.db import Database
from embedding_studio.schemas.tasks import (
    MAX_AHEAD_SHOWN,
    MAX_ITEMS_PER_REQUEST,
    DeleteIn,
    DeploymentOut,
    FineTuningTaskIn,
    ModelListOut,
    ModelOut,
    QueuedTaskOut,
    QueuePositionOut,
    ReindexTaskIn,
    SearchIn,
    SearchOut,
    SearchResultOut,
    TaskCreatedOut,
    TaskListOut,
    TaskOut,
    TaskStatus,
    UpsertIn,
)
from embedding_studio.tasks.queue import QueuePosition, queue_position, queue_positions
from embedding_studio.tasks.types import Task

__all__ = [
    "MAX_ITEMS_PER_REQUEST",
    "DeleteIn",
    "DeploymentOut",
    "FineTuningTaskIn",
    "ModelListOut",
    "ModelOut",
    "QueuePositionOut",
    "QueuedTaskOut",
    "ReindexTaskIn",
    "SearchIn",
    "SearchOut",
    "SearchResultOut",
    "TaskCreatedOut",
    "TaskListOut",
    "TaskOut",
    "UpsertIn",
    "queue_position_out",
    "task_out",
    "task_outs",
]


def queue_position_out(position: QueuePosition) -> QueuePositionOut:
    """A pending task's place in the queue as the API shows it (at most ``MAX_AHEAD_SHOWN`` tasks ahead listed)."""
    return QueuePositionOut(
        queue=position.queue,
        position=position.position,
        ahead=[
            QueuedTaskOut(
                id=entry.task_id,
                kind=entry.kind,
                queue=entry.queue,
                status="running" if entry.running else "waiting",
            )
            for entry in position.ahead[:MAX_AHEAD_SHOWN]
        ],
        ahead_count=len(position.ahead),
        summary=position.describe(),
    )


def task_out(
    database: Database, task: Task, position: QueuePosition | None = None, look_up_position: bool = True
) -> TaskOut:
    """A task's answer; ``position`` as :func:`task_outs` found it, else a pending task's is looked up in
    ``database``'s queue (one query)."""
    if position is None and look_up_position and task.status is TaskStatus.pending:
        position = queue_position(database, task)
    return TaskOut(
        id=task.id,
        kind=task.kind.value,
        status=task.status.value,
        params=task.params,
        parent_id=task.parent_id,
        best_run_id=task.best_run_id,
        best_model_url=task.best_model_url,
        error=task.error,
        progress=task.progress,
        progress_message=task.progress_message,
        result=task.result,
        deployment=_deployment_of(task),
        queue=queue_position_out(position) if position is not None else None,
        idempotency_key=task.idempotency_key,
        cancel_requested=task.cancel_requested,
        attempts=task.attempts,
        created_at=task.created_at,
        updated_at=task.updated_at,
        started_at=task.started_at,
        finished_at=task.finished_at,
    )


def task_outs(database: Database, tasks: list[Task]) -> list[TaskOut]:
    """A list's answers, the queue positions of its pending tasks read at once."""
    positions = queue_positions(database, tasks)
    return [task_out(database, task, positions.get(task.id), look_up_position=False) for task in tasks]


def _deployment_of(task: Task) -> DeploymentOut | None:
    deployment = (task.result or {}).get("deployment")
    return DeploymentOut.model_validate(deployment) if isinstance(deployment, dict) else None
