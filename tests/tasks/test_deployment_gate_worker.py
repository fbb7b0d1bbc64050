"""The issue's test of the deployment gate, through a real ``embedding-studio worker`` and the real pipeline.

Blue is a tiny model serving the catalog; users search it and click shown results *at random*, not by
relevance. Fine-tuning on that noise with ``deploy_as_blue`` must leave blue exactly as it was: the task
ends done, with no child reindex, and says why. The same batch with ``force_deploy`` deploys.

The fine-tuning starts from a second tiny model rather than from blue, so the candidate is a different
model whatever the trainer keeps: were it to keep its untrained weights while starting from blue, the
candidate would *be* blue, tie with it, and rightly pass a gate that deploys a model at least as good.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from embedding_studio.models.tiny import COMMON_WORDS
from embedding_studio.tasks import FineTuningTaskParams, LoaderSpec, TaskStatus, index_catalog
from embedding_studio.tasks.service import TaskService

from .worker_process import start_worker, stop_worker, wait_for

if TYPE_CHECKING:
    from embedding_studio.clickstream.dao import ClickstreamRepository
    from embedding_studio.tasks.repository import TaskRepository
    from embedding_studio.vectordb import VectorStore

pytestmark = pytest.mark.integration

QUERY_COUNT = 24
SESSIONS_PER_QUERY = 2


def _noise_batch(clickstream_repository: ClickstreamRepository, store: VectorStore, seed: int = 0) -> int:
    """Searches on blue, each with one click on a shown result drawn at random; the released batch id."""
    from embedding_studio.serving.search import search_blue

    rng = random.Random(seed)
    words = COMMON_WORDS[:300]
    queries = [f"{words[(index * 11) % 300]} {words[(index * 17 + 5) % 300]}" for index in range(QUERY_COUNT)]
    for query in queries:
        for number in range(SESSIONS_PER_QUERY):
            answer = search_blue(query, limit=10, user_id=f"user-{number}", store=store)
            clicked = rng.choice(answer.hits).item_id
            clickstream_repository.add_events(
                answer.session_id, [{"event_id": f"{answer.session_id}:c", "item_id": clicked}]
            )
    return int(clickstream_repository.release_batch().released_batch_id)


def _fine_tune(task_repository: TaskRepository, params: FineTuningTaskParams, log_path: Path) -> str:
    task, _ = TaskService(task_repository).create_fine_tuning_task(params)
    wait_for(
        lambda: task_repository.get_task(task.id).status.is_final,
        timeout=90,
        message=f"fine-tuning task {task.id} did not finish",
        log_path=log_path,
    )
    return task.id


def test_clicks_that_are_noise_leave_blue_as_it_was_and_force_deploy_deploys_anyway(
    worker_env: Path,
    tiny_models: tuple[str, str],
    catalog: Path,
    monkeypatch: pytest.MonkeyPatch,
    task_repository: TaskRepository,
    clickstream_repository: ClickstreamRepository,
    vector_store: VectorStore,
) -> None:
    monkeypatch.setenv("EMBEDDING_STUDIO_HPO_STARTUP_TRIALS", "1")
    blue_model, start_model = tiny_models
    loader = {"name": "jsonl_catalog", "options": {"path": str(catalog)}}
    index_catalog(blue_model, LoaderSpec.model_validate(loader), store=vector_store)
    batch_id = _noise_batch(clickstream_repository, vector_store)
    params = FineTuningTaskParams(
        batch_id=batch_id,
        embedding_model_id=start_model,
        method_options={"max_evals": 1, "num_epochs": 1, "loader": loader, "base_model": start_model},
        deploy_as_blue=True,
    )

    worker = start_worker(worker_env)
    try:
        kept_id = _fine_tune(task_repository, params, worker_env)
        kept = task_repository.get_task(kept_id)
        assert kept.status is TaskStatus.done, kept.error
        deployment = kept.result["deployment"]
        assert deployment["deployed"] is False, deployment
        assert deployment["reason"].startswith("not deployed: NDCG@10 "), deployment
        assert deployment["blue_model_id"] == blue_model and deployment["candidate"] < deployment["blue"]
        assert kept.progress_message == deployment["reason"]
        assert kept.result["reindex_task_id"] is None and task_repository.child_tasks(kept_id) == []
        assert vector_store.get_deployment().blue_model_id == blue_model
        assert [collection.model_id for collection in vector_store.list_collections()] == [blue_model]

        forced_id = _fine_tune(task_repository, params.model_copy(update={"force_deploy": True}), worker_env)
        forced = task_repository.get_task(forced_id)
        assert forced.status is TaskStatus.done, forced.error
        assert forced.result["deployment"]["deployed"] is True
        assert forced.result["deployment"]["reason"].startswith("deployed (forced): NDCG@10 ")
        child_id = forced.result["reindex_task_id"]
        assert [child.id for child in task_repository.child_tasks(forced_id)] == [child_id]
        wait_for(
            lambda: task_repository.get_task(child_id).status.is_final,
            timeout=60,
            message="the forced deployment's reindex did not finish",
            log_path=worker_env,
        )
        assert task_repository.get_task(child_id).status is TaskStatus.done, task_repository.get_task(child_id).error
        assert vector_store.get_deployment().blue_model_id == forced.best_run_id
    finally:
        stop_worker(worker)
