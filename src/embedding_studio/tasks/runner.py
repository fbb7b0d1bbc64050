"""The worker process: procrastinate running our job functions, plus recovery of jobs whose worker died.

procrastinate workers write a heartbeat; a job still ``doing`` under a worker whose heartbeat stopped
(killed with SIGKILL, machine lost) is *stalled*. On start and then periodically every worker looks
for stalled jobs: reindex and upsert jobs are retried once (they are idempotent: the collection is
rebuilt from scratch, upserts replace whole items), fine-tuning jobs are failed with the reason,
since their half-logged experiment should be looked at before running again. Either way the task
never stays ``processing`` forever.

A task is recorded before its job is queued; a process that dies between the two leaves it ``pending``
with no job. The same periodic check queues those (`send_unsent_tasks`), so no task stays ``pending``
forever either. A job sent twice runs once: the second finds its task no longer pending.

``run_worker`` takes the process's one ``Database`` and hands its ``TaskRepository`` and ``VectorStore`` to the job
functions (``workers.TaskWorkers``, ``trials.fine_tuning_trials_worker``, ``shards.reindex_shards_worker``) and the
repository to the recovery here.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
from collections.abc import Sequence

import procrastinate
from procrastinate import jobs

from embedding_studio.tasks.queue import JOB_NAMES, send_task
from embedding_studio.tasks.repository import TaskRepository
from embedding_studio.tasks.shards import SHARDS_JOB_NAME, SHARDS_QUEUE, reindex_shards_worker
from embedding_studio.tasks.trials import TRIALS_JOB_NAME, TRIALS_QUEUE, fine_tuning_trials_worker, set_worker_name
from embedding_studio.tasks.types import ALL_QUEUES, QUEUE_OF_KIND, TaskKind, TaskStatus
from embedding_studio.tasks.workers import RUNNING_HERE, TaskWorkers
from embedding_studio.vectordb import VectorStore

logger = logging.getLogger(__name__)

RETRIED_KINDS = frozenset({TaskKind.reindex, TaskKind.upsert})
MAX_TASK_ATTEMPTS = 2


def build_worker_app(tasks: TaskRepository, store: VectorStore, concurrency: int = 1) -> procrastinate.App:
    """procrastinate on the tasks' database, with the job functions on ``tasks`` and ``store`` registered under the
    job names."""
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=tasks.database.conninfo, min_size=1, max_size=max(4, concurrency + 3)
        )
    )
    for kind, function in TaskWorkers(tasks, store).functions().items():
        app.task(name=JOB_NAMES[kind], queue=QUEUE_OF_KIND[kind])(function)
    app.task(name=TRIALS_JOB_NAME, queue=TRIALS_QUEUE)(functools.partial(fine_tuning_trials_worker, tasks))
    app.task(name=SHARDS_JOB_NAME, queue=SHARDS_QUEUE)(functools.partial(reindex_shards_worker, tasks, store))
    return app


async def recover_stalled_jobs(app: procrastinate.App, tasks: TaskRepository, stalled_after_s: float) -> list[str]:
    """Retry or fail the jobs of dead workers and fix their tasks; returns the task ids handled."""
    handled: list[str] = []
    stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after_s)
    for job in stalled:
        if job.task_name in (TRIALS_JOB_NAME, SHARDS_JOB_NAME):
            # A helper of a shared search or a sharded reindex died: its trial fails, its shard is claimed again,
            # by their stopped heartbeats (tasks.trials, tasks.shards); the task is its owner's.
            await app.job_manager.finish_job(job, status=jobs.Status.FAILED, delete_job=False)
            continue
        if job.task_name not in JOB_NAMES.values():
            continue  # another application's job in a shared queue
        task_id = str(job.task_kwargs.get("task_id", ""))
        if task_id in RUNNING_HERE:
            continue  # this very process runs it: slow heartbeats, not a dead worker
        task = await asyncio.to_thread(tasks.find_task, task_id)
        if task is None or task.status.is_final:
            await app.job_manager.finish_job(job, status=jobs.Status.FAILED, delete_job=False)
            continue
        reason = f"the worker running this task died (no heartbeat for {stalled_after_s:.0f}s)"
        if task.kind in RETRIED_KINDS and task.attempts < MAX_TASK_ATTEMPTS and not task.cancel_requested:
            await asyncio.to_thread(tasks.requeue_task, task_id, reason + "; retrying")
            await app.job_manager.retry_job(job)
            logger.warning("task %s: %s; retried", task_id, reason)
        else:
            await app.job_manager.finish_job(job, status=jobs.Status.FAILED, delete_job=False)
            status = TaskStatus.canceled if task.cancel_requested else TaskStatus.failed
            await asyncio.to_thread(tasks.finish_task, task_id, status, reason)
            logger.warning("task %s: %s; marked %s", task_id, reason, status.value)
        handled.append(task_id)
    return handled


def send_unsent_tasks(tasks: TaskRepository, older_than_s: float) -> list[str]:
    """Queue the jobs of pending tasks whose sender died before queuing them; returns the task ids sent."""
    sent: list[str] = []
    for task in tasks.unsent_pending_tasks(older_than_s):
        try:
            send_task(tasks, task)
        except Exception:  # send_task marked it failed with the reason
            logger.exception("task %s: its job could not be queued", task.id)
            continue
        logger.warning("task %s was pending with no job for over %.0fs: its job is queued now", task.id, older_than_s)
        sent.append(task.id)
    return sent


async def recover(app: procrastinate.App, tasks: TaskRepository, stalled_after_s: float, unsent_after_s: float) -> None:
    await recover_stalled_jobs(app, tasks, stalled_after_s)
    await asyncio.to_thread(send_unsent_tasks, tasks, unsent_after_s)


async def _recover_periodically(
    app: procrastinate.App, tasks: TaskRepository, stalled_after_s: float, unsent_after_s: float, every_s: float
) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await recover(app, tasks, stalled_after_s, unsent_after_s)
        except Exception:  # a failed check must not take the worker down; the next one tries again
            logger.exception("stalled job check failed")


def run_worker(
    queues: Sequence[str] | None = None,
    concurrency: int = 1,
    heartbeat_interval_s: float = 10.0,
    stalled_after_s: float = 30.0,
    check_every_s: float = 15.0,
    unsent_after_s: float = 60.0,
    name: str | None = None,
) -> None:
    """Run a worker until SIGINT/SIGTERM: the given queues (default all), ``concurrency`` jobs at once.

    This is the worker process's wiring: it takes the process's ``Database`` and hands its ``TaskRepository`` and
    ``VectorStore`` down.
    """
    from embedding_studio.db import default_database, upgrade_database

    unknown = sorted(set(queues or ()) - set(ALL_QUEUES))
    if unknown:
        raise ValueError(f"unknown queue(s) {', '.join(unknown)}; queues are {', '.join(ALL_QUEUES)}")
    if stalled_after_s <= heartbeat_interval_s:
        raise ValueError("stalled_after_s must be longer than heartbeat_interval_s, or live workers look dead")
    upgrade_database()
    database = default_database()
    tasks = TaskRepository(database)
    app = build_worker_app(tasks, VectorStore(database), concurrency=concurrency)
    worker_name = name or f"{socket.gethostname()}-{os.getpid()}"
    set_worker_name(worker_name)  # what a fine-tuning task's progress names for the trials run here

    async def main() -> None:
        async with app.open_async():
            await recover(app, tasks, stalled_after_s, unsent_after_s)
            checker = asyncio.create_task(
                _recover_periodically(app, tasks, stalled_after_s, unsent_after_s, check_every_s)
            )
            try:
                await app.run_worker_async(
                    queues=list(queues) if queues else None,
                    concurrency=concurrency,
                    name=worker_name,
                    update_heartbeat_interval=heartbeat_interval_s,
                    stalled_worker_timeout=stalled_after_s,
                    fetch_job_polling_interval=1.0,
                    abort_job_polling_interval=2.0,
                    install_signal_handlers=True,
                )
            finally:
                checker.cancel()

    logger.info("worker %s on queues %s", worker_name, ", ".join(queues or ALL_QUEUES))
    asyncio.run(main())
