"""Fine-tuning tasks through a real ``embedding-studio worker`` process and the real pipeline, when things go wrong.

A fine-tuning task whose training raises must end ``failed`` with the reason a user can act on; a fine-tuning
worker killed with SIGKILL (out of memory, a lost machine) must not leave its task ``processing`` forever: the
next worker's check for stalled jobs fails it, saying the worker died (fine-tuning is failed, not retried, since
its half-logged experiment should be looked at before training again; see ``tasks.runner``).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from embedding_studio.models.tiny import COMMON_WORDS
from embedding_studio.tasks import FineTuningTaskParams, TaskStatus
from embedding_studio.tasks.service import TaskService

from .worker_process import start_worker, stop_worker, wait_for, write_catalog

if TYPE_CHECKING:
    from embedding_studio.clickstream.dao import ClickstreamRepository
    from embedding_studio.tasks.repository import TaskRepository

pytestmark = pytest.mark.integration

QUERY_COUNT = 24


def _released_batch(clickstream_repository: ClickstreamRepository, catalog_size: int = 60) -> int:
    """Sessions over the catalog's items, each query clicking an item whose text contains its first word:
    enough distinct queries for the train/test split, released as one batch; returns its id."""
    words = COMMON_WORDS[:300]
    for index in range(QUERY_COUNT):
        shown = [f"item-{(index * 5 + offset) % catalog_size}" for offset in range(8)]
        for repeat in range(2):
            session_id = f"q{index}-{repeat}"
            clickstream_repository.add_session(
                session_id=session_id, query=f"{words[index * 7 % 300]} {words[index * 3 % 300]}", results=shown
            )
            clickstream_repository.add_events(
                session_id, [{"event_id": "click", "item_id": shown[(index + repeat) % 8]}]
            )
    return int(clickstream_repository.release_batch().released_batch_id)


def test_a_fine_tuning_task_that_raises_ends_failed_with_its_reason(
    worker_env: Path,
    tiny_models: tuple[str, str],
    tmp_path: Path,
    task_repository: TaskRepository,
    clickstream_repository: ClickstreamRepository,
) -> None:
    model, _ = tiny_models
    missing = write_catalog(tmp_path / "corpus.jsonl", 60)
    task, _ = TaskService(task_repository).create_fine_tuning_task(
        FineTuningTaskParams(
            batch_id=_released_batch(clickstream_repository),
            embedding_model_id=model,
            method_options={
                "max_evals": 1,
                "num_epochs": 1,
                "base_model": model,
                "loader": {"name": "jsonl_catalog", "options": {"path": str(missing)}},
            },
        )
    )
    missing.unlink()  # the catalog moved after the task was accepted: training cannot read its items
    worker = start_worker(worker_env, "--queues", "fine_tuning")
    try:
        wait_for(
            lambda: task_repository.get_task(task.id).status.is_final,
            timeout=90,
            message=f"fine-tuning task {task.id} did not end",
            log_path=worker_env,
        )
        assert worker.poll() is None, "one failed task must not take the worker down"
    finally:
        stop_worker(worker)
    failed = task_repository.get_task(task.id)
    assert failed.status is TaskStatus.failed, (failed.status, failed.progress_message)
    assert failed.error and str(missing) in failed.error, failed.error  # the reason names what was missing
    assert failed.finished_at is not None and failed.best_run_id is None


def test_a_sigkilled_fine_tuning_workers_task_ends_failed_not_processing(
    worker_env: Path,
    tiny_models: tuple[str, str],
    catalog: Path,
    task_repository: TaskRepository,
    clickstream_repository: ClickstreamRepository,
) -> None:
    model, _ = tiny_models
    # Far more trials and epochs than the test waits for: the task is surely mid-training when the worker dies.
    task, _ = TaskService(task_repository).create_fine_tuning_task(
        FineTuningTaskParams(
            batch_id=_released_batch(clickstream_repository),
            embedding_model_id=model,
            method_options={
                "max_evals": 200,
                "num_epochs": 50,
                "base_model": model,
                "loader": {"name": "jsonl_catalog", "options": {"path": str(catalog)}},
            },
        )
    )
    first = start_worker(worker_env, "--queues", "fine_tuning")
    try:
        wait_for(
            lambda: task_repository.get_task(task.id).progress > 0,
            timeout=90,
            message="the fine-tuning never made progress",
            log_path=worker_env,
        )
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert task_repository.get_task(task.id).status is TaskStatus.processing  # what the dead worker left
    finally:
        stop_worker(first)
    killed_at = time.monotonic()
    second = start_worker(worker_env, "--queues", "fine_tuning")
    try:
        wait_for(
            lambda: task_repository.get_task(task.id).status.is_final,
            timeout=60,
            message="the killed worker's fine-tuning task stayed processing",
            log_path=worker_env,
        )
        assert second.poll() is None
    finally:
        stop_worker(second)
    final = task_repository.get_task(task.id)
    assert final.status is TaskStatus.failed, (final.status, final.error)
    assert "the worker running this task died" in (final.error or ""), final.error
    assert final.attempts == 1  # failed, not retried: nothing ran it a second time
    assert time.monotonic() - killed_at < 60
