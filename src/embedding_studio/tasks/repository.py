"""The task table: creating tasks (idempotently), reading them, and the status transitions workers make.

Transitions are conditional updates (``WHERE status = ...``), so two workers, an API cancel and the
stalled-job recovery can race on one task and the table still tells one consistent story.

:class:`TaskRepository` is handed the :class:`~embedding_studio.db.Database` it runs on and sends only the
statements of ``tasks.queries``. Whoever wires the process (the API's lifespan, a CLI command, the worker's
start-up, a job's entry point) builds it on the process's ``Database`` and hands it down.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from psycopg.rows import dict_row

from embedding_studio.db import Database
from embedding_studio.tasks import queries
from embedding_studio.tasks.errors import (
    AmbiguousIdError,
    IdempotencyConflictError,
    TaskStateError,
    UnknownTaskError,
)
from embedding_studio.tasks.types import FINAL_STATUSES, Task, TaskKind, TaskStatus

MAX_ERROR_LENGTH = 4000

#: The shortest id prefix printed, as git does: short enough to type, long enough to stay unique for long.
MIN_ID_PREFIX = 8


def new_task_id() -> str:
    return uuid.uuid4().hex


class TaskRepository:
    """Every read and write of the task table, on the database it is handed."""

    def __init__(self, database: Database) -> None:
        self._database = database

    @property
    def database(self) -> Database:
        return self._database

    # ------------------------------------------------------------------------------------------ statements

    def _tasks(self, statement: str, parameters: dict[str, Any]) -> list[Task]:
        with self._database.connection() as connection, connection.cursor(row_factory=dict_row) as cursor:
            rows = cursor.execute(statement, parameters).fetchall()
        return [Task.from_row(row) for row in rows]

    def _task_or_none(self, statement: str, parameters: dict[str, Any]) -> Task | None:
        """The task a one-row statement answers (an update's ``RETURNING``); None when no row matched."""
        with self._database.connection() as connection, connection.cursor(row_factory=dict_row) as cursor:
            row = cursor.execute(statement, parameters).fetchone()
        return Task.from_row(row) if row is not None else None

    # ------------------------------------------------------------------------------------------ reads and writes

    def create_task(
        self,
        kind: TaskKind,
        params: dict[str, Any],
        parent_id: str | None = None,
        idempotency_key: str | None = None,
        status: TaskStatus = TaskStatus.pending,
        error: str | None = None,
    ) -> tuple[Task, bool]:
        """Insert a task; with an idempotency key already used, return that task and ``created=False``."""
        with self._database.transaction() as connection, connection.cursor(row_factory=dict_row) as cursor:
            row = cursor.execute(
                queries.INSERT_TASK,
                {
                    "id": new_task_id(),
                    "kind": kind.value,
                    "status": status.value,
                    "params": json.dumps(params),
                    "parent_id": parent_id,
                    "key": idempotency_key,
                    "error": error,
                    "final": status in FINAL_STATUSES,
                },
            ).fetchone()
            if row is not None:
                return Task.from_row(row), True
            existing = cursor.execute(queries.SELECT_TASKS_BY_IDEMPOTENCY_KEY, {"key": idempotency_key}).fetchone()
        if existing is None:  # pragma: no cover - the conflicting row cannot vanish inside the transaction
            raise UnknownTaskError(f"idempotency key {idempotency_key!r}")
        task = Task.from_row(existing)
        if task.kind != kind:
            raise IdempotencyConflictError(
                f"idempotency key {idempotency_key!r} already belongs to {task.kind.value} task {task.id}"
            )
        return task, False

    def get_task(self, task_id: str, kind: TaskKind | None = None) -> Task:
        task = self._task_or_none(queries.SELECT_TASK, {"id": task_id})
        if task is None or (kind is not None and task.kind != kind):
            raise UnknownTaskError(task_id)
        return task

    def find_task(self, task_id: str) -> Task | None:
        try:
            return self.get_task(task_id)
        except UnknownTaskError:
            return None

    def resolve_task_id(self, id_or_prefix: str) -> str:
        """The whole id of the one task whose id is or starts with ``id_or_prefix``.

        People type back the ids they were shown, often shortened; an ambiguous prefix is refused with the
        candidates rather than guessed, since acting on the wrong task (cancelling it) cannot be undone.
        """
        prefix = id_or_prefix.strip()
        if not prefix:
            raise UnknownTaskError(id_or_prefix)
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._database.connection() as connection:
            rows = connection.execute(queries.SELECT_TASKS_BY_ID_PREFIX, {"id": prefix, "pattern": pattern}).fetchall()
        if not rows:
            raise UnknownTaskError(prefix)
        if rows[0][0] == prefix or len(rows) == 1:
            return str(rows[0][0])
        raise AmbiguousIdError(
            "task", prefix, [f"{row[0]} ({row[1]}, {row[2]}, {row[3]:%Y-%m-%d %H:%M})" for row in rows]
        )

    def shortest_unique_prefixes(self, task_ids: Sequence[str]) -> dict[str, str]:
        """For each id, its shortest prefix (at least MIN_ID_PREFIX characters) that no other task id shares.

        The ids sharing the longest prefix with an id are its neighbours in sorted order, so two index lookups
        per id answer it, however many tasks the table holds.
        """
        if not task_ids:
            return {}
        with self._database.connection() as connection:
            rows = connection.execute(queries.SELECT_ID_NEIGHBOURS, {"ids": list(task_ids)}).fetchall()
        prefixes: dict[str, str] = {}
        for task_id, before, after in rows:
            shared = max(_common_prefix_length(task_id, neighbour) for neighbour in (before, after))
            prefixes[task_id] = task_id[: max(MIN_ID_PREFIX, shared + 1)]
        return prefixes

    def best_run_ids_starting_with(self, prefix: str) -> list[str]:
        """The best runs of fine-tuning tasks whose MLflow run id starts with ``prefix`` (the ids `--follow`
        prints)."""
        with self._database.connection() as connection:
            rows = connection.execute(queries.SELECT_BEST_RUN_IDS_LIKE, {"pattern": prefix + "%"}).fetchall()
        return [str(row[0]) for row in rows]

    def fine_tuning_task_of_run(self, run_id: str) -> Task | None:
        """The fine-tuning task whose best model is this MLflow run: what it was trained from and on, so the CLI
        can name a model by that instead of by its run hash."""
        return self._task_or_none(queries.SELECT_FINE_TUNING_TASK_OF_RUN, {"run_id": run_id})

    def list_tasks(
        self,
        kind: TaskKind | None = None,
        statuses: Sequence[TaskStatus] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Task]:
        """Newest first."""
        return self._tasks(
            queries.SELECT_TASKS_PAGE,
            {
                "kind": kind.value if kind else None,
                "statuses": [status.value for status in statuses] if statuses is not None else None,
                "limit": limit,
                "offset": offset,
            },
        )

    def count_tasks_by_status(self) -> dict[str, int]:
        with self._database.connection() as connection:
            rows = connection.execute(queries.COUNT_TASKS_BY_STATUS).fetchall()
        return {row[0]: int(row[1]) for row in rows}

    def set_job_id(self, task_id: str, job_id: int) -> None:
        self._task_or_none(queries.SET_JOB_ID, {"id": task_id, "job_id": job_id})

    def start_task(self, task_id: str) -> Task | None:
        """pending → processing; None when the task is not pending any more (canceled, or already taken)."""
        return self._task_or_none(queries.START_TASK, {"id": task_id})

    def set_progress(self, task_id: str, fraction: float, message: str | None = None) -> None:
        self._task_or_none(
            queries.SET_PROGRESS,
            {"id": task_id, "progress": min(max(float(fraction), 0.0), 1.0), "message": message},
        )

    def finish_task(
        self,
        task_id: str,
        status: TaskStatus,
        error: str | None = None,
        best_run_id: str | None = None,
        best_model_url: str | None = None,
        result: dict[str, Any] | None = None,
        only_from: Sequence[TaskStatus] = (TaskStatus.pending, TaskStatus.processing),
        message: str | None = None,
    ) -> Task | None:
        """Move a task to a final status (done, failed, canceled, refused) unless it already has one.

        ``message`` replaces the last progress message, so what a finished task says last (``tasks list``, the
        API's ``progress_message``) is its outcome, e.g. "not deployed: NDCG@10 0.4100 against blue 0.4300".
        Without one, a task ending with an error says "failed: <its first line>" rather than keeping whatever
        step it was on ("applying item changes...") as if it were still there.
        """
        if status not in FINAL_STATUSES:
            raise ValueError(f"{status} is not a final status")
        if message is None and error:
            first_line = error.strip().splitlines()[0] if error.strip() else error
            message = f"{status.value}: {first_line}"[:MAX_ERROR_LENGTH]
        return self._task_or_none(
            queries.FINISH_TASK,
            {
                "id": task_id,
                "status": status.value,
                "error": error[:MAX_ERROR_LENGTH] if error else None,
                "best_run_id": best_run_id,
                "best_model_url": best_model_url,
                "result": json.dumps(result) if result is not None else None,
                "message": message,
                "only_from": [value.value for value in only_from],
            },
        )

    def requeue_task(self, task_id: str, reason: str) -> Task | None:
        """processing → pending again (its worker died and the job is retried)."""
        return self._task_or_none(queries.REQUEUE_TASK, {"id": task_id, "reason": reason})

    def request_cancel(self, task_id: str) -> Task:
        """Cancel a pending task now; flag a processing one so its worker stops at the next check."""
        task = self.get_task(task_id)
        if task.status.is_final:
            raise TaskStateError(f"task {task_id} is already {task.status.value}: there is nothing to cancel")
        canceled = self.finish_task(
            task_id, TaskStatus.canceled, error="canceled by request", only_from=[TaskStatus.pending]
        )
        if canceled is not None:
            return canceled
        flagged = self._task_or_none(queries.FLAG_CANCEL, {"id": task_id})
        if flagged is not None:
            return flagged
        return self.get_task(task_id)  # it finished in the meantime

    def is_cancel_requested(self, task_id: str) -> bool:
        with self._database.connection() as connection:
            row = connection.execute(queries.SELECT_CANCEL_REQUESTED, {"id": task_id}).fetchone()
        return bool(row[0]) if row else True

    def active_reindex_tasks(self, dest_model_id: str, exclude_task_id: str | None = None) -> list[Task]:
        """Reindex tasks into ``dest_model_id`` that are pending or processing (a conflict for a new one)."""
        return self._tasks(queries.SELECT_ACTIVE_REINDEX_TASKS, {"dest": dest_model_id, "exclude": exclude_task_id})

    def child_tasks(self, parent_id: str) -> list[Task]:
        return self._tasks(queries.SELECT_CHILD_TASKS, {"parent": parent_id})

    def list_tasks_by_idempotency_key(self, idempotency_key: str) -> list[Task]:
        return self._tasks(queries.SELECT_TASKS_BY_IDEMPOTENCY_KEY, {"key": idempotency_key})

    def unsent_pending_tasks(self, older_than_s: float) -> list[Task]:
        """Pending tasks recorded a while ago whose job was never queued (the sending process died in between)."""
        return self._tasks(queries.SELECT_UNSENT_PENDING_TASKS, {"seconds": older_than_s})

    def trained_batch_ids(self, model_id: str) -> list[int] | None:
        """The clickstream batches the fine-tuning that produced ``model_id`` (its best run) trained on, oldest
        first.

        None when no finished fine-tuning task made the model (a base model, a local directory). Tasks record
        ``result.batch_ids``; tasks finished before that was recorded trained on their one ``params.batch_id``.
        """
        task = self._task_or_none(queries.SELECT_DONE_FINE_TUNING_OF_MODEL, {"model": model_id})
        if task is None:
            return None
        recorded = (task.result or {}).get("batch_ids")
        if isinstance(recorded, list):
            return sorted(int(batch) for batch in recorded)
        batch_id = task.params.get("batch_id")
        return [int(batch_id)] if batch_id is not None else []


def _common_prefix_length(first: str, second: str | None) -> int:
    if second is None:
        return 0
    length = 0
    for left, right in zip(first, second, strict=False):
        if left != right:
            break
        length += 1
    return length
