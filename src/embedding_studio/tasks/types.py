"""What a task is, as the rest of the system sees it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The kinds and statuses are part of the API's answers, so they are defined with them (the client needs them).
from embedding_studio.schemas.tasks import FINAL_STATUSES, TaskKind, TaskStatus

__all__ = ["ALL_QUEUES", "FINAL_STATUSES", "QUEUE_OF_KIND", "Task", "TaskKind", "TaskStatus"]


#: The procrastinate queue each kind of task runs on.
QUEUE_OF_KIND = {TaskKind.fine_tuning: "fine_tuning", TaskKind.reindex: "reindex", TaskKind.upsert: "upsert"}
ALL_QUEUES = tuple(QUEUE_OF_KIND.values())


@dataclass(frozen=True)
class Task:
    """One row of the task table, as read (``tasks.queries.TASK_COLUMNS``); changing a task is the repository's."""

    id: str
    kind: TaskKind
    status: TaskStatus
    params: dict[str, Any]
    parent_id: str | None
    best_run_id: str | None
    best_model_url: str | None
    error: str | None
    progress: float
    progress_message: str | None
    result: dict[str, Any] | None
    idempotency_key: str | None
    job_id: int | None
    cancel_requested: bool
    attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Task:
        """The task of a row with the columns of ``tasks.queries.TASK_COLUMNS`` (psycopg's ``dict_row``)."""
        return cls(
            id=row["id"],
            kind=TaskKind(row["kind"]),
            status=TaskStatus(row["status"]),
            params=dict(row["params"] or {}),
            parent_id=row["parent_id"],
            best_run_id=row["best_run_id"],
            best_model_url=row["best_model_url"],
            error=row["error"],
            progress=float(row["progress"]),
            progress_message=row["progress_message"],
            result=row["result"],
            idempotency_key=row["idempotency_key"],
            job_id=row["job_id"],
            cancel_requested=bool(row["cancel_requested"]),
            attempts=int(row["attempts"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
        )
