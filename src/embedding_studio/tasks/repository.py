"""The task table: creating tasks (idempotently), reading them, and the status transitions workers make.

Transitions are conditional updates (``WHERE status = ...``), so two workers, an API cancel and the
stalled-job recovery can race on one task and the table still tells one consistent story.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import RowMapping

from embedding_studio.db import get_engine
from embedding_studio.tasks.errors import (
    AmbiguousIdError,
    IdempotencyConflictError,
    TaskStateError,
    UnknownTaskError,
)
from embedding_studio.tasks.types import FINAL_STATUSES, Task, TaskKind, TaskStatus

_COLUMNS = (
    "id, kind, status, params, parent_id, best_run_id, best_model_url, error, progress, progress_message, "
    "result, idempotency_key, job_id, cancel_requested, attempts, created_at, updated_at, started_at, finished_at"
)
MAX_ERROR_LENGTH = 4000


def _task(row: RowMapping) -> Task:
    return Task(
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


def new_task_id() -> str:
    return uuid.uuid4().hex


def create_task(
    kind: TaskKind,
    params: dict[str, Any],
    parent_id: str | None = None,
    idempotency_key: str | None = None,
    status: TaskStatus = TaskStatus.pending,
    error: str | None = None,
) -> tuple[Task, bool]:
    """Insert a task; with an idempotency key already used, return that task and ``created=False``."""
    with get_engine().begin() as connection:
        row = (
            connection.execute(
                text(
                    f"INSERT INTO tasks (id, kind, status, params, parent_id, idempotency_key, error, finished_at) "
                    f"VALUES (:id, :kind, :status, CAST(:params AS jsonb), :parent_id, :key, :error, "
                    f"CASE WHEN :final THEN now() END) "
                    f"ON CONFLICT (idempotency_key) DO NOTHING RETURNING {_COLUMNS}"
                ),
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
            )
            .mappings()
            .first()
        )
        if row is not None:
            return _task(row), True
        existing = (
            connection.execute(
                text(f"SELECT {_COLUMNS} FROM tasks WHERE idempotency_key = :key"), {"key": idempotency_key}
            )
            .mappings()
            .one()
        )
    task = _task(existing)
    if task.kind != kind:
        raise IdempotencyConflictError(
            f"idempotency key {idempotency_key!r} already belongs to {task.kind.value} task {task.id}"
        )
    return task, False


def get_task(task_id: str, kind: TaskKind | None = None) -> Task:
    with get_engine().connect() as connection:
        row = (
            connection.execute(text(f"SELECT {_COLUMNS} FROM tasks WHERE id = :id"), {"id": task_id}).mappings().first()
        )
    if row is None or (kind is not None and row["kind"] != kind.value):
        raise UnknownTaskError(task_id)
    return _task(row)


#: The shortest id prefix printed, as git does: short enough to type, long enough to stay unique for long.
MIN_ID_PREFIX = 8


def resolve_task_id(id_or_prefix: str) -> str:
    """The whole id of the one task whose id is or starts with ``id_or_prefix``.

    People type back the ids they were shown, often shortened; an ambiguous prefix is refused with the
    candidates rather than guessed, since acting on the wrong task (cancelling it) cannot be undone.
    """
    prefix = id_or_prefix.strip()
    if not prefix:
        raise UnknownTaskError(id_or_prefix)
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with get_engine().connect() as connection:
        rows = connection.execute(
            text(
                "SELECT id, kind, status, created_at FROM tasks WHERE id = :id OR id LIKE :pattern "
                "ORDER BY (id = :id) DESC, created_at DESC LIMIT 11"
            ),
            {"id": prefix, "pattern": pattern},
        ).all()
    if not rows:
        raise UnknownTaskError(prefix)
    if rows[0][0] == prefix or len(rows) == 1:
        return str(rows[0][0])
    raise AmbiguousIdError(
        "task", prefix, [f"{row[0]} ({row[1]}, {row[2]}, {row[3]:%Y-%m-%d %H:%M})" for row in rows]
    )


def shortest_unique_prefixes(task_ids: Sequence[str]) -> dict[str, str]:
    """For each id, its shortest prefix (at least MIN_ID_PREFIX characters) that no other task id shares.

    The ids sharing the longest prefix with an id are its neighbours in sorted order, so two index lookups
    per id answer it, however many tasks the table holds.
    """
    if not task_ids:
        return {}
    with get_engine().connect() as connection:
        rows = connection.execute(
            text(
                'SELECT shown.id, (SELECT max(other.id COLLATE "C") FROM tasks other '
                '                  WHERE other.id COLLATE "C" < shown.id COLLATE "C"), '
                '       (SELECT min(other.id COLLATE "C") FROM tasks other '
                '                  WHERE other.id COLLATE "C" > shown.id COLLATE "C") '
                "FROM unnest(CAST(:ids AS text[])) AS shown(id)"
            ),
            {"ids": list(task_ids)},
        ).all()
    prefixes: dict[str, str] = {}
    for task_id, before, after in rows:
        shared = max(_common_prefix_length(task_id, neighbour) for neighbour in (before, after))
        prefixes[task_id] = task_id[: max(MIN_ID_PREFIX, shared + 1)]
    return prefixes


def best_run_ids_starting_with(prefix: str) -> list[str]:
    """The best runs of fine-tuning tasks whose MLflow run id starts with ``prefix`` (the ids `--follow` prints)."""
    with get_engine().connect() as connection:
        rows = connection.execute(
            text("SELECT DISTINCT best_run_id FROM tasks WHERE best_run_id LIKE :pattern ORDER BY 1"),
            {"pattern": prefix + "%"},
        ).all()
    return [str(row[0]) for row in rows]


def fine_tuning_task_of_run(run_id: str) -> Task | None:
    """The fine-tuning task whose best model is this MLflow run: what it was trained from and on, so the CLI can
    name a model by that instead of by its run hash."""
    tasks = _select_tasks(
        "kind = 'fine_tuning' AND best_run_id = :run_id ORDER BY created_at DESC LIMIT 1", {"run_id": run_id}
    )
    return tasks[0] if tasks else None


def _common_prefix_length(first: str, second: str | None) -> int:
    if second is None:
        return 0
    length = 0
    for left, right in zip(first, second, strict=False):
        if left != right:
            break
        length += 1
    return length


def find_task(task_id: str) -> Task | None:
    try:
        return get_task(task_id)
    except UnknownTaskError:
        return None


def list_tasks(
    kind: TaskKind | None = None,
    statuses: Sequence[TaskStatus] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Task]:
    """Newest first."""
    return _select_tasks(
        "(CAST(:kind AS text) IS NULL OR kind = :kind) "
        "AND (CAST(:statuses AS text[]) IS NULL OR status = ANY(CAST(:statuses AS text[]))) "
        "ORDER BY created_at DESC, id LIMIT :limit OFFSET :offset",
        {
            "kind": kind.value if kind else None,
            "statuses": [status.value for status in statuses] if statuses is not None else None,
            "limit": limit,
            "offset": offset,
        },
    )


def count_tasks_by_status() -> dict[str, int]:
    with get_engine().connect() as connection:
        rows = connection.execute(text("SELECT status, count(*) FROM tasks GROUP BY status")).all()
    return {row[0]: int(row[1]) for row in rows}


def _update(task_id: str, assignments: str, parameters: dict[str, Any], condition: str = "true") -> Task | None:
    with get_engine().begin() as connection:
        row = (
            connection.execute(
                text(
                    f"UPDATE tasks SET {assignments}, updated_at = now() WHERE id = :id AND ({condition}) "
                    f"RETURNING {_COLUMNS}"
                ),
                {"id": task_id, **parameters},
            )
            .mappings()
            .first()
        )
    return _task(row) if row else None


def _select_tasks(condition: str, parameters: dict[str, Any]) -> list[Task]:
    """The tasks whose row matches ``condition`` (SQL after WHERE, ORDER BY and LIMIT included)."""
    with get_engine().connect() as connection:
        rows = connection.execute(text(f"SELECT {_COLUMNS} FROM tasks WHERE {condition}"), parameters).mappings().all()
    return [_task(row) for row in rows]


def set_job_id(task_id: str, job_id: int) -> None:
    _update(task_id, "job_id = :job_id", {"job_id": job_id})


def start_task(task_id: str) -> Task | None:
    """pending → processing; None when the task is not pending any more (canceled, or already taken)."""
    return _update(
        task_id,
        "status = 'processing', started_at = now(), attempts = attempts + 1, progress = 0, "
        "progress_message = 'started', error = NULL",
        {},
        "status = 'pending'",
    )


def set_progress(task_id: str, fraction: float, message: str | None = None) -> None:
    _update(
        task_id,
        "progress = :progress, progress_message = coalesce(:message, progress_message)",
        {"progress": min(max(float(fraction), 0.0), 1.0), "message": message},
        "status = 'processing'",
    )


def finish_task(
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
        message = f"{status.value}: {error.strip().splitlines()[0] if error.strip() else error}"[:MAX_ERROR_LENGTH]
    return _update(
        task_id,
        "status = :status, error = :error, finished_at = now(), "
        "best_run_id = coalesce(:best_run_id, best_run_id), "
        "best_model_url = coalesce(:best_model_url, best_model_url), "
        "result = coalesce(CAST(:result AS jsonb), result), "
        "progress_message = coalesce(:message, progress_message), "
        "progress = CASE WHEN :status = 'done' THEN 1 ELSE progress END",
        {
            "status": status.value,
            "error": error[:MAX_ERROR_LENGTH] if error else None,
            "best_run_id": best_run_id,
            "best_model_url": best_model_url,
            "result": json.dumps(result) if result is not None else None,
            "message": message,
            "only_from": [value.value for value in only_from],
        },
        "status = ANY(CAST(:only_from AS text[]))",
    )


def requeue_task(task_id: str, reason: str) -> Task | None:
    """processing → pending again (its worker died and the job is retried)."""
    return _update(
        task_id,
        "status = 'pending', progress_message = :reason",
        {"reason": reason},
        "status = 'processing'",
    )


def request_cancel(task_id: str) -> Task:
    """Cancel a pending task now; flag a processing one so its worker stops at the next check."""
    task = get_task(task_id)
    if task.status.is_final:
        raise TaskStateError(f"task {task_id} is already {task.status.value}: there is nothing to cancel")
    canceled = finish_task(task_id, TaskStatus.canceled, error="canceled by request", only_from=[TaskStatus.pending])
    if canceled is not None:
        return canceled
    flagged = _update(task_id, "cancel_requested = true", {}, "status = 'processing'")
    if flagged is not None:
        return flagged
    return get_task(task_id)  # it finished in the meantime


def is_cancel_requested(task_id: str) -> bool:
    with get_engine().connect() as connection:
        row = connection.execute(
            text("SELECT cancel_requested OR status = 'canceled' FROM tasks WHERE id = :id"), {"id": task_id}
        ).first()
    return bool(row[0]) if row else True


def active_reindex_tasks(dest_model_id: str, exclude_task_id: str | None = None) -> list[Task]:
    """Reindex tasks into ``dest_model_id`` that are pending or processing (a conflict for a new one)."""
    return _select_tasks(
        "kind = 'reindex' AND status IN ('pending', 'processing') "
        "AND params->>'dest_model_id' = :dest AND (CAST(:exclude AS text) IS NULL OR id <> :exclude) "
        "ORDER BY created_at",
        {"dest": dest_model_id, "exclude": exclude_task_id},
    )


def child_tasks(parent_id: str) -> list[Task]:
    return _select_tasks("parent_id = :parent ORDER BY created_at", {"parent": parent_id})


def list_tasks_by_idempotency_key(idempotency_key: str) -> list[Task]:
    return _select_tasks("idempotency_key = :key", {"key": idempotency_key})


def unsent_pending_tasks(older_than_s: float) -> list[Task]:
    """Pending tasks recorded a while ago whose job was never queued (the sending process died in between)."""
    return _select_tasks(
        "status = 'pending' AND job_id IS NULL AND created_at < now() - make_interval(secs => :seconds) "
        "ORDER BY created_at",
        {"seconds": older_than_s},
    )


def trained_batch_ids(model_id: str) -> list[int] | None:
    """The clickstream batches the fine-tuning that produced ``model_id`` (its best run) trained on, oldest first.

    None when no finished fine-tuning task made the model (a base model, a local directory). Tasks record
    ``result.batch_ids``; tasks finished before that was recorded trained on their one ``params.batch_id``.
    """
    tasks = _select_tasks(
        "kind = 'fine_tuning' AND status = 'done' AND best_run_id = :model ORDER BY finished_at DESC LIMIT 1",
        {"model": model_id},
    )
    if not tasks:
        return None
    recorded = (tasks[0].result or {}).get("batch_ids")
    if isinstance(recorded, list):
        return sorted(int(batch) for batch in recorded)
    batch_id = tasks[0].params.get("batch_id")
    return [int(batch_id)] if batch_id is not None else []
