"""Real ``embedding-studio worker`` processes: jobs run, a SIGKILLed worker's task never stays processing."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from embedding_studio.tasks import LoaderSpec, ReindexTaskParams, TaskStatus, UpsertTaskParams, index_catalog
from embedding_studio.tasks.params import UpsertItem
from embedding_studio.tasks.service import TaskService

from .worker_process import start_worker, stop_worker, wait_for

if TYPE_CHECKING:
    from embedding_studio.tasks.repository import TaskRepository
    from embedding_studio.vectordb import VectorStore

pytestmark = pytest.mark.integration


def test_a_task_of_a_worker_killed_mid_task_ends_done_or_failed_after_a_new_worker_starts(
    worker_env: Path,
    tiny_models: tuple[str, str],
    catalog: Path,
    task_repository: TaskRepository,
    vector_store: VectorStore,
) -> None:
    model_a, model_b = tiny_models
    index_catalog(model_a, LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)}), store=vector_store)
    task = TaskService(task_repository).create_reindex_task(
        ReindexTaskParams(dest_model_id=model_b, deploy_as_blue=True, batch_size=4, pause_between_batches_s=0.3)
    )
    first = start_worker(worker_env)
    try:
        wait_for(
            lambda: task_repository.get_task(task.id).progress > 0.05,
            timeout=60,
            message="the reindex never made progress",
            log_path=worker_env,
        )
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert task_repository.get_task(task.id).status is TaskStatus.processing  # what the dead worker left
    finally:
        stop_worker(first)
    second = start_worker(worker_env)
    try:
        wait_for(
            lambda: task_repository.get_task(task.id).status.is_final,
            timeout=90,
            message="the killed worker's task stayed unfinished",
            log_path=worker_env,
        )
    finally:
        stop_worker(second)
    final = task_repository.get_task(task.id)
    assert final.status in (TaskStatus.done, TaskStatus.failed)
    if final.status is TaskStatus.done:  # retried: the rebuilt collection is complete and deployed
        assert final.attempts == 2
        assert vector_store.get_deployment().blue_model_id == model_b
        assert vector_store.get_collection(model_b).item_count == 60
    else:
        assert "worker" in (final.error or "")
        assert vector_store.get_deployment().blue_model_id == model_a


def test_upserts_deletes_and_cancel_through_the_worker(
    worker_env: Path,
    tiny_models: tuple[str, str],
    catalog: Path,
    task_repository: TaskRepository,
    vector_store: VectorStore,
) -> None:
    model_a, model_b = tiny_models
    index_catalog(model_a, LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)}), store=vector_store)
    worker = start_worker(worker_env)
    try:
        upsert = TaskService(task_repository).create_upsert_task(
            UpsertTaskParams(upserts=[UpsertItem(item_id="fresh", text="green island ocean", payload={"k": 1})])
        )
        delete = TaskService(task_repository).create_upsert_task(UpsertTaskParams(deletes=["item-3"]))
        for task in (upsert, delete):
            wait_for(
                lambda task=task: task_repository.get_task(task.id).status.is_final,
                timeout=60,
                message="upsert task did not finish",
                log_path=worker_env,
            )
            assert task_repository.get_task(task.id).status is TaskStatus.done, task_repository.get_task(task.id).error
        items = {part.item_id for batch in vector_store.iter_source_parts(model_a) for part in batch}
        assert "fresh" in items and "item-3" not in items

        slow = TaskService(task_repository).create_reindex_task(
            ReindexTaskParams(dest_model_id=model_b, batch_size=2, pause_between_batches_s=0.5)
        )
        wait_for(
            lambda: task_repository.get_task(slow.id).status is TaskStatus.processing,
            timeout=60,
            message="reindex did not start",
            log_path=worker_env,
        )
        assert TaskService(task_repository).cancel_task(slow.id).cancel_requested
        wait_for(
            lambda: task_repository.get_task(slow.id).status.is_final,
            timeout=60,
            message="canceled reindex did not stop",
            log_path=worker_env,
        )
        assert task_repository.get_task(slow.id).status is TaskStatus.canceled
        assert vector_store.get_collection(model_b) is None  # the half-built collection is gone
    finally:
        stop_worker(worker)


def test_a_pending_task_is_canceled_at_once_and_never_runs(worker_env: Path, task_repository: TaskRepository) -> None:
    task = TaskService(task_repository).create_upsert_task(UpsertTaskParams(deletes=["x"]))
    canceled = TaskService(task_repository).cancel_task(task.id)
    assert canceled.status is TaskStatus.canceled
    with pytest.raises(Exception, match="already canceled"):
        TaskService(task_repository).cancel_task(task.id)
