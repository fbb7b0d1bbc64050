"""One fine-tuning task's parameter search split between two real ``embedding-studio worker`` processes.

Both workers listen on every queue of one embedded PostgreSQL; the task searches 4 parameter sets. Whichever worker
takes the task owns it and queues trial jobs; the other takes one and runs trials of the same Optuna study
(``finetuning.shared_search``). The task must end done with trials on both workers, every trial a run of the task's
one MLflow experiment, one best model, and one deployment (one child reindex task, which flips blue to it).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from embedding_studio.tasks import FineTuningTaskParams, LoaderSpec, TaskStatus, index_catalog
from embedding_studio.tasks.service import TaskService

from .test_fine_tuning_worker import _released_batch
from .worker_process import start_worker, stop_worker, wait_for

if TYPE_CHECKING:
    from embedding_studio.clickstream.dao import ClickstreamRepository
    from embedding_studio.tasks.repository import TaskRepository
    from embedding_studio.vectordb import VectorStore

pytestmark = pytest.mark.integration

TRIALS = 4


def test_two_workers_split_the_trials_of_one_fine_tuning_task_and_deploy_its_best_model_once(
    worker_env: Path,
    tiny_models: tuple[str, str],
    catalog: Path,
    task_repository: TaskRepository,
    clickstream_repository: ClickstreamRepository,
    vector_store: VectorStore,
) -> None:
    from embedding_studio.config import get_settings
    from embedding_studio.tracking import ExperimentsManager

    model, _ = tiny_models
    index_catalog(model, LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)}), store=vector_store)
    workers = [start_worker(worker_env, "--name", name) for name in ("worker-a", "worker-b")]
    try:
        started = time.monotonic()
        task, _ = TaskService(task_repository).create_fine_tuning_task(
            FineTuningTaskParams(
                batch_id=_released_batch(clickstream_repository),
                embedding_model_id=model,
                deploy_as_blue=True,
                force_deploy=True,  # the gate is not under test: whatever the figures, the best model goes out
                method_options={
                    "max_evals": TRIALS,
                    # Long enough per trial (seconds) that the second worker prepares the data before the
                    # owner could run every trial alone.
                    "num_epochs": 6,
                    "base_model": model,
                    "loader": {"name": "jsonl_catalog", "options": {"path": str(catalog)}},
                },
            )
        )
        wait_for(
            lambda: task_repository.get_task(task.id).status.is_final,
            timeout=240,
            message=f"fine-tuning task {task.id} did not end",
            log_path=worker_env,
        )
        done = task_repository.get_task(task.id)
        assert done.status is TaskStatus.done, (done.status, done.error)
        children = task_repository.child_tasks(task.id)
        assert len(children) == 1, children  # one deployment, by the owner only
        wait_for(
            lambda: task_repository.get_task(children[0].id).status.is_final,
            timeout=120,
            message="the deployment's reindex did not end",
            log_path=worker_env,
        )
        elapsed = time.monotonic() - started
        assert all(worker.poll() is None for worker in workers)
    finally:
        for worker in workers:
            stop_worker(worker)

    result = done.result or {}
    trial_workers = result["trial_workers"]
    assert set(trial_workers) == {"worker-a", "worker-b"}, (trial_workers, worker_env.read_text()[-3000:])
    assert sum(trial_workers.values()) == TRIALS, trial_workers

    tracker = ExperimentsManager(tracking_uri=get_settings().resolved_mlflow_tracking_uri)
    runs = tracker.list_runs(result["experiment_id"])
    assert len(runs) == TRIALS, [run.run_id for run in runs]  # every trial, wherever it ran, in the one experiment
    assert done.best_run_id in {run.run_id for run in runs}
    assert [run.run_id for run in runs if run.has_model] == [done.best_run_id]  # one best model kept

    assert task_repository.get_task(children[0].id).status is TaskStatus.done
    assert vector_store.get_deployment().blue_model_id == done.best_run_id
    print(f"2 workers, {TRIALS} trials: {elapsed:.1f}s, trials per worker {trial_workers}")
