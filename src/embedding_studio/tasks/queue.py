"""The procrastinate queue in the project's PostgreSQL: sending tasks and reading its depth.

Tasks are sent by name with a synchronous connector, so the API, the CLI and sync worker code can
send without an event loop; the worker process registers the functions under the same names. Everything here
runs on the :class:`~embedding_studio.db.Database` (or the ``TaskRepository``) it is handed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import procrastinate
from psycopg.rows import namedtuple_row

from embedding_studio.db import Database
from embedding_studio.tasks import queries
from embedding_studio.tasks.repository import TaskRepository
from embedding_studio.tasks.types import QUEUE_OF_KIND, Task, TaskKind, TaskStatus

logger = logging.getLogger(__name__)

JOB_NAMES = {
    TaskKind.fine_tuning: "embedding_studio.fine_tuning_worker",
    TaskKind.reindex: "embedding_studio.reindex_worker",
    TaskKind.upsert: "embedding_studio.upsert_worker",
}

_apps: dict[str, procrastinate.App] = {}
_lock = threading.Lock()


def get_sending_app(database: Database) -> procrastinate.App:
    """A procrastinate app with a sync connector on ``database``, opened once per database."""
    conninfo = database.conninfo
    with _lock:
        app = _apps.get(conninfo)
        if app is None:
            app = procrastinate.App(
                connector=procrastinate.SyncPsycopgConnector(conninfo=conninfo, min_size=1, max_size=4)
            )
            app.open()
            _apps[conninfo] = app
        return app


def close_sending_apps() -> None:
    with _lock:
        for app in _apps.values():
            app.close()
        _apps.clear()


def send_task(tasks: TaskRepository, task: Task) -> Task:
    """Queue a pending task's job; a task that cannot be queued is marked failed, not left pending."""
    try:
        job_id = (
            get_sending_app(tasks.database)
            .configure_task(JOB_NAMES[task.kind], queue=QUEUE_OF_KIND[task.kind])
            .defer(task_id=task.id)
        )
    except Exception as error:
        tasks.finish_task(task.id, TaskStatus.failed, error=f"could not queue the task: {error}")
        raise
    tasks.set_job_id(task.id, job_id)
    return tasks.get_task(task.id)


def cancel_job(job_id: int, database: Database) -> bool:
    """Remove a job of ``database``'s queue that no worker has taken yet."""
    try:
        return bool(get_sending_app(database).job_manager.cancel_job_by_id(job_id))
    except Exception:  # the job is running or gone: the task's own cancel flag handles it
        logger.debug("job %s could not be canceled in the queue", job_id, exc_info=True)
        return False


def queue_depth(database: Database) -> dict[str, dict[str, int]]:
    """Jobs per queue and status (todo, doing, ...) straight from procrastinate's table."""
    with database.connection() as connection:
        rows = connection.execute(queries.QUEUE_DEPTH).fetchall()
    depth: dict[str, dict[str, int]] = {}
    for queue, status, count in rows:
        depth.setdefault(queue, {})[status] = int(count)
    return depth


@dataclass(frozen=True)
class QueuedTask:
    """A task a worker takes before another one: running now, or waiting ahead of it."""

    task_id: str
    kind: str
    queue: str
    running: bool


@dataclass(frozen=True)
class QueuePosition:
    """Where a pending task waits, so "pending" for minutes has a reason: its place in its queue (1: the next one
    a worker of that queue takes) and the tasks a worker runs first. Running tasks of every queue are listed, and
    waiting ones of other queues picked before it: ``embedding-studio worker`` takes every queue by default, one
    job at a time, so a reindex waits for a fine-tune. A worker dedicated to its queue skips the other queues'."""

    queue: str
    position: int
    ahead: tuple[QueuedTask, ...] = ()

    def describe(self, ids: dict[str, str] | None = None, limit: int = 5) -> str:
        """One line: "2nd in the reindex queue, after fine_tuning task 1a2b3c4d (running) and …"; ``ids`` maps a
        task id to how to print it (a unique prefix)."""
        line = f"waiting: {_ordinal(self.position)} in the {self.queue} queue"
        if not self.ahead:
            return line + ", next to run"
        shown = [
            f"{entry.kind} task {(ids or {}).get(entry.task_id, entry.task_id)} ("
            + ("running" if entry.running else "waiting")
            + (f", {entry.queue} queue" if entry.queue != self.queue else "")
            + ")"
            for entry in self.ahead[:limit]
        ]
        more = len(self.ahead) - limit
        return line + ", after " + ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def queue_positions(database: Database, tasks: Iterable[Task]) -> dict[str, QueuePosition]:
    """The queue position of each of ``tasks`` whose job waits in the queue (one read of procrastinate's table for
    all of them). A worker takes the highest priority first, then the oldest job, across the queues it serves."""
    waiting_jobs = {task.job_id: task.id for task in tasks if task.status is TaskStatus.pending and task.job_id}
    if not waiting_jobs:
        return {}
    with database.connection() as connection, connection.cursor(row_factory=namedtuple_row) as cursor:
        rows = cursor.execute(queries.SELECT_QUEUED_JOBS).fetchall()
    running = [QueuedTask(row.task_id, row.kind, row.queue_name, True) for row in rows if row.status == "doing"]
    todo = [row for row in rows if row.status == "todo"]
    positions: dict[str, QueuePosition] = {}
    for index, row in enumerate(todo):
        task_id = waiting_jobs.get(row.id)
        if task_id is None:
            continue
        before = todo[:index]  # ordered as a worker picks: priority, then age
        positions[task_id] = QueuePosition(
            queue=row.queue_name,
            position=1 + sum(1 for other in before if other.queue_name == row.queue_name),
            ahead=tuple(running)
            + tuple(QueuedTask(other.task_id, other.kind, other.queue_name, False) for other in before),
        )
    return positions


def queue_position(database: Database, task: Task) -> QueuePosition | None:
    """:func:`queue_positions` of one task; None unless it waits in the queue."""
    return queue_positions(database, [task]).get(task.id)
