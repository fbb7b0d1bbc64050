"""The procrastinate queue in the project's PostgreSQL: sending tasks and reading its depth.

Tasks are sent by name with a synchronous connector, so the API, the CLI and sync worker code can
send without an event loop; the worker process registers the functions under the same names.
"""

from __future__ import annotations

import logging
import threading

import procrastinate
from sqlalchemy import text

from embedding_studio.db import get_engine
from embedding_studio.db.pool import current_conninfo
from embedding_studio.tasks import repository
from embedding_studio.tasks.types import QUEUE_OF_KIND, Task, TaskKind, TaskStatus

logger = logging.getLogger(__name__)

JOB_NAMES = {
    TaskKind.fine_tuning: "embedding_studio.fine_tuning_worker",
    TaskKind.reindex: "embedding_studio.reindex_worker",
    TaskKind.upsert: "embedding_studio.upsert_worker",
}

_apps: dict[str, procrastinate.App] = {}
_lock = threading.Lock()


def get_sending_app() -> procrastinate.App:
    """A procrastinate app with a sync connector, opened once per database."""
    conninfo = current_conninfo()
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


def send_task(task: Task) -> Task:
    """Queue a pending task's job; a task that cannot be queued is marked failed, not left pending."""
    try:
        job_id = (
            get_sending_app()
            .configure_task(JOB_NAMES[task.kind], queue=QUEUE_OF_KIND[task.kind])
            .defer(task_id=task.id)
        )
    except Exception as error:
        repository.finish_task(task.id, TaskStatus.failed, error=f"could not queue the task: {error}")
        raise
    repository.set_job_id(task.id, job_id)
    return repository.get_task(task.id)


def cancel_job(job_id: int) -> bool:
    """Remove a job that no worker has taken yet."""
    try:
        return bool(get_sending_app().job_manager.cancel_job_by_id(job_id))
    except Exception:  # the job is running or gone: the task's own cancel flag handles it
        logger.debug("job %s could not be canceled in the queue", job_id, exc_info=True)
        return False


def queue_depth() -> dict[str, dict[str, int]]:
    """Jobs per queue and status (todo, doing, ...) straight from procrastinate's table."""
    with get_engine().connect() as connection:
        rows = connection.execute(
            text("SELECT queue_name, status::text, count(*) FROM procrastinate_jobs GROUP BY 1, 2 ORDER BY 1, 2")
        ).all()
    depth: dict[str, dict[str, int]] = {}
    for queue, status, count in rows:
        depth.setdefault(queue, {})[status] = int(count)
    return depth
