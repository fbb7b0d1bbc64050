"""A fine-tuning task's trials on every worker of the fine-tuning queue: the task layer of ``finetuning.shared_search``.

The job that owns the task (``workers.fine_tuning_worker``) plans the task's Optuna study in the project's
PostgreSQL (study ``fine-tuning-task-<id>``), then queues ``max_evals - 1`` *trial jobs* on the fine-tuning queue:
each worker that takes one runs trials of the study until none waits (:func:`fine_tuning_trials_worker`), so a
job beyond the number of idle workers finds nothing to do and ends in milliseconds, having prepared nothing. The
owner runs trials as well, waits for the others, then picks the best and deploys once; the trial jobs still
queued then are dropped. Trial jobs are not tasks: a helper never changes the task's status (only its progress:
"trials 3/4 done on host-1 (2), host-2 (1)"), and a dead helper's job is only closed by the stalled-job check,
its trial being failed by its stopped heartbeat (``shared_search``).
"""

from __future__ import annotations

import logging
import os
import socket

from embedding_studio.finetuning.shared_search import SharedTrials
from embedding_studio.tasks.repository import TaskRepository
from embedding_studio.tasks.types import QUEUE_OF_KIND, TaskKind, TaskStatus

logger = logging.getLogger(__name__)

TRIALS_JOB_NAME = "embedding_studio.fine_tuning_trials_worker"
TRIALS_QUEUE = QUEUE_OF_KIND[TaskKind.fine_tuning]

_worker_name: str | None = None


def set_worker_name(name: str) -> None:
    """The name ``run_worker`` gave this process's worker: what the task's progress says ran each trial."""
    global _worker_name
    _worker_name = name


def worker_name() -> str:
    return _worker_name or f"{socket.gethostname()}-{os.getpid()}"


def study_name_of(task_id: str) -> str:
    return f"fine-tuning-task-{task_id}"


def shared_trials_for(tasks: TaskRepository, task_id: str, owner: bool = False) -> SharedTrials | None:
    """The task's shared study in the tasks' database; None when sharing is switched off
    (``EMBEDDING_STUDIO_HPO_SHARE_TRIALS=false``). The owner's queues the trial jobs once the study is planned."""
    from embedding_studio.finetuning.hpo import HyperparameterSearchSettings
    from embedding_studio.finetuning.shared_search import project_storage

    settings = HyperparameterSearchSettings()
    if not settings.share_trials:
        return None
    storage = project_storage(tasks.database.sqlalchemy_url, settings.heartbeat_s, settings.stale_after_s)
    shared = SharedTrials(study_name=study_name_of(task_id), storage=storage, worker=worker_name())
    if owner:
        shared.on_study_ready = lambda trials: _remember_jobs(task_id, send_trial_jobs(tasks, task_id, trials - 1))
    return shared


_sent_jobs: dict[str, list[int]] = {}


def _remember_jobs(task_id: str, job_ids: list[int]) -> None:
    _sent_jobs[task_id] = job_ids


def send_trial_jobs(tasks: TaskRepository, task_id: str, count: int) -> list[int]:
    """Queue ``count`` trial jobs of the task on the fine-tuning queue (one per worker that may help at most)."""
    from embedding_studio.tasks.queue import get_sending_app

    if count <= 0:
        return []
    deferrer = get_sending_app(tasks.database).configure_task(TRIALS_JOB_NAME, queue=TRIALS_QUEUE)
    return [int(deferrer.defer(task_id=task_id)) for _ in range(count)]


def drop_trial_jobs(tasks: TaskRepository, task_id: str) -> int:
    """Remove the task's trial jobs no worker took (the search is over); returns how many were dropped."""
    from embedding_studio.tasks.queue import cancel_job

    return sum(1 for job_id in _sent_jobs.pop(task_id, []) if cancel_job(job_id, tasks.database))


def _helping_is_over(tasks: TaskRepository, task_id: str) -> bool:
    task = tasks.find_task(task_id)
    return task is None or task.status is not TaskStatus.processing or task.cancel_requested


def fine_tuning_trials_worker(tasks: TaskRepository, task_id: str) -> None:
    """A trial job: run waiting trials of the task's study until none is left, the task ended, or it was canceled.

    A trial that raises is recorded on the study (the owner fails the task with it) and fails this job too."""
    from embedding_studio.clickstream.dao import ClickstreamRepository
    from embedding_studio.finetuning.method import get_method
    from embedding_studio.finetuning.pipeline import run_shared_trials
    from embedding_studio.tasks.params import FineTuningTaskParams
    from embedding_studio.tasks.workers import progress_reporter

    task = tasks.find_task(task_id)
    if task is None or task.kind is not TaskKind.fine_tuning or task.status is not TaskStatus.processing:
        logger.info("trial job of task %s skipped: the task is not a running fine-tuning task", task_id)
        return
    shared = shared_trials_for(tasks, task_id)
    if shared is None:
        return
    params = FineTuningTaskParams.model_validate(task.params)
    method = get_method(params.method, **params.method_options)
    try:
        ran = run_shared_trials(
            ClickstreamRepository(tasks.database),
            method,
            shared,
            progress=progress_reporter(tasks, task_id),
            should_stop=lambda: _helping_is_over(tasks, task_id),
        )
    finally:
        from embedding_studio.models import release_memory

        release_memory()
    logger.info("trial job of task %s: %d trial(s) run on %s", task_id, ran, shared.worker)
