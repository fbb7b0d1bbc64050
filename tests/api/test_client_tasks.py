"""The Python client's search, task, model and item methods against the real app (in-process over ASGI) and
the real database. Queued jobs are run by calling the worker functions in this process, not a worker process,
so the file stays fast; tests/tasks covers real worker processes."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient

from embedding_studio.api.app import create_app
from embedding_studio.api.schemas.tasks import TaskOut
from embedding_studio.client import (
    ApiError,
    EmbeddingStudioClient,
    TaskEndedError,
    TaskTimeoutError,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.worker_process import clear_queue, write_catalog  # noqa: E402

if TYPE_CHECKING:
    from embedding_studio.tasks.repository import TaskRepository
    from embedding_studio.vectordb import VectorStore

pytestmark = pytest.mark.integration

CATALOG_SIZE = 20


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    from embedding_studio.models.tiny import tiny_model_directory

    root = tmp_path_factory.mktemp("client-models")
    return str(tiny_model_directory(root / "first", seed=0)), str(tiny_model_directory(root / "second", seed=1))


@pytest.fixture()
def client(clean_db: str) -> Iterator[EmbeddingStudioClient]:
    clear_queue()
    with TestClient(create_app(run_migrations=False), base_url="http://testserver") as http_client:
        yield EmbeddingStudioClient("http://testserver", http_client=http_client)
    clear_queue()  # no job of this test is left for another test's worker


@pytest.fixture()
def indexed(
    client: EmbeddingStudioClient, tiny_models: tuple[str, str], tmp_path: Path, vector_store: VectorStore
) -> EmbeddingStudioClient:
    """The catalog indexed with the first model, then reindexed with the second, which is blue."""
    from embedding_studio.tasks import LoaderSpec, ReindexTaskParams, index_catalog, run_reindex

    first, second = tiny_models
    catalog = write_catalog(tmp_path / "corpus.jsonl", CATALOG_SIZE)
    index_catalog(first, LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)}), store=vector_store)
    run_reindex(ReindexTaskParams(dest_model_id=second, deploy_as_blue=True), store=vector_store)
    return client


def run_upsert_job(tasks: TaskRepository, task_id: str) -> None:
    """What a worker on the upsert queue does with the job the API queued (on the tasks' database)."""
    from embedding_studio.tasks import TaskWorkers
    from embedding_studio.vectordb import VectorStore

    TaskWorkers(tasks, VectorStore(tasks.database)).upsert_worker(task_id)


def test_search_without_a_deployed_model_says_why(client: EmbeddingStudioClient) -> None:
    with pytest.raises(ApiError) as refused:
        client.search("water")
    assert refused.value.status_code == 503 and "no model is deployed" in refused.value.detail
    models = client.list_models()
    assert models.blue_model_id is None and models.models == []


def test_bad_task_requests_are_refused_with_the_reason(client: EmbeddingStudioClient) -> None:
    with pytest.raises(ApiError) as unknown_batch:
        client.create_fine_tuning_task(424242)
    assert unknown_batch.value.status_code == 422 and "424242" in unknown_batch.value.detail
    collecting = client.list_batches()[0]
    with pytest.raises(ApiError) as not_released:
        client.create_fine_tuning_task(collecting.id)
    assert not_released.value.status_code == 422 and "release it" in not_released.value.detail

    with pytest.raises(ApiError) as missing_text:
        client.upsert_items([{"item_id": "a", "text": "water"}, {"item_id": "b"}])
    assert missing_text.value.status_code == 422
    assert [error["field"] for error in missing_text.value.errors] == ["items.1"]
    assert "item 'b': give text, fields or image, exactly one" in missing_text.value.errors[0]["reason"]
    with pytest.raises(ApiError) as no_items:
        client.upsert_items([])
    assert no_items.value.status_code == 422 and no_items.value.errors[0]["field"] == "items"
    with pytest.raises(ApiError) as unknown_field:
        client.upsert_items([{"item_id": "a", "text": "water", "colour": "red"}])
    assert unknown_field.value.status_code == 422 and unknown_field.value.errors[0]["field"] == "items.0.colour"
    with pytest.raises(ApiError) as no_ids:
        client.delete_items([])
    assert no_ids.value.status_code == 422 and no_ids.value.errors[0]["field"] == "item_ids"

    with pytest.raises(ApiError) as unknown_model:
        client.create_reindex_task("/nowhere/model-that-does-not-exist")
    assert unknown_model.value.status_code == 422 and "does not exist" in unknown_model.value.detail
    for getter in (client.get_fine_tuning_task, client.get_reindex_task, client.get_items_task):
        with pytest.raises(ApiError) as missing:
            getter("no-such-task")
        assert missing.value.status_code == 404 and "no-such-task" in missing.value.detail
    with pytest.raises(ValueError, match="unknown task kind 'nope'"):
        client.get_task("x", "nope")


def test_fine_tuning_tasks_are_created_once_listed_and_canceled(client: EmbeddingStudioClient) -> None:
    batch_id = client.release_batch().released_batch_id
    created = client.create_fine_tuning_task(batch_id, method_options={"max_evals": 1}, idempotency_key="client-test")
    assert created.status == "pending"
    assert client.create_fine_tuning_task(batch_id, idempotency_key="client-test").id == created.id
    task = client.get_fine_tuning_task(created.id)
    assert task.kind == "fine_tuning" and task.params["batch_id"] == batch_id
    assert task.params["method"] == "default_text" and task.params["method_options"] == {"max_evals": 1}
    assert task.params["embedding_model_id"] is None  # the worker starts from the blue model
    assert [listed.id for listed in client.list_fine_tuning_tasks()] == [created.id]
    assert client.list_fine_tuning_tasks(status="done") == []

    canceled = client.cancel_fine_tuning_task(created.id)
    assert canceled.status == "canceled"
    with pytest.raises(ApiError) as again:
        client.cancel_fine_tuning_task(created.id)
    assert again.value.status_code == 409 and "already canceled" in again.value.detail
    assert [listed.id for listed in client.list_fine_tuning_tasks(status="canceled")] == [created.id]
    with pytest.raises(TaskEndedError, match=f"fine_tuning task {created.id} ended canceled") as ended:
        client.wait_for_task(created.id, "fine-tuning", timeout=5)
    assert ended.value.task.status == "canceled"


def test_search_answers_from_the_blue_model_and_records_the_session(
    indexed: EmbeddingStudioClient, tiny_models: tuple[str, str]
) -> None:
    client = indexed
    _, second = tiny_models
    answer = client.search("water river", limit=4, user_id="u1")
    assert answer.model_id == second and len(answer.results) == 4
    scores = [result.score for result in answer.results]
    assert scores == sorted(scores, reverse=True)
    assert all(result.item_id.startswith("item-") for result in answer.results)
    session = client.get_session(answer.session_id)
    assert session.results == [result.item_id for result in answer.results] and session.user_id == "u1"
    assert client.add_click(answer.session_id, "click-1", answer.results[1].item_id).inserted == 1
    second_page = client.search("water river", limit=2, offset=2)
    assert [result.item_id for result in second_page.results] == [result.item_id for result in answer.results[2:]]


def test_models_list_marks_blue_and_rollback_goes_back(
    indexed: EmbeddingStudioClient, tiny_models: tuple[str, str]
) -> None:
    client = indexed
    first, second = tiny_models
    models = client.list_models()
    assert models.blue_model_id == second and models.previous_blue_model_id == first
    assert {model.id: (model.is_blue, model.is_previous_blue) for model in models.models} == {
        first: (False, True),
        second: (True, False),
    }
    assert {model.item_count for model in models.models} == {CATALOG_SIZE}
    with pytest.raises(ApiError) as not_blue:
        client.rollback_model(first)  # rollback names the current blue model, not the target
    assert not_blue.value.status_code == 409 and "not the blue model" in not_blue.value.detail
    with pytest.raises(ApiError) as never_indexed:
        client.rollback_model("never-indexed")
    assert never_indexed.value.status_code == 404
    rolled = client.rollback_model(second)
    assert rolled.blue_model_id == first
    assert client.search("water").model_id == first


def test_upserts_and_deletes_through_http_reach_search(
    indexed: EmbeddingStudioClient, task_repository: TaskRepository
) -> None:
    client = indexed
    upsert = client.upsert_items(
        [{"item_id": "fresh", "text": "green island ocean", "payload": {"shelf": 7}}], idempotency_key="up-1"
    )
    assert upsert.status == "pending"
    assert client.get_items_task(upsert.id).params["upserts"][0]["item_id"] == "fresh"

    seen: list[TaskOut] = []
    worker = threading.Thread(target=lambda: (time.sleep(0.3), run_upsert_job(task_repository, upsert.id)))
    worker.start()
    try:
        done = client.wait_for_task(upsert.id, "upsert", timeout=20, poll_interval=0.05, on_progress=seen.append)
    finally:
        worker.join()
    assert done.status == "done" and done.result is not None and done.result["upserted"] == 1
    assert seen[0].status in ("pending", "processing") and seen[-1].status == "done"

    everything = {result.item_id: result for result in client.search("green island ocean", limit=30).results}
    assert len(everything) == CATALOG_SIZE + 1 and everything["fresh"].payload == {
        "shelf": 7,
        "snippet": "green island ocean",  # the display payload: the upsert's own fields, and what was embedded
    }

    delete = client.delete_items(["fresh", "item-3"])
    run_upsert_job(task_repository, delete.id)
    assert client.wait_for_task(delete.id, "items", timeout=5).result["deleted"] == 2
    remaining = {result.item_id for result in client.search("green island ocean", limit=30).results}
    assert len(remaining) == CATALOG_SIZE - 1 and not {"fresh", "item-3"} & remaining

    pending = client.delete_items(["item-4"])
    with pytest.raises(TaskTimeoutError, match=f"upsert task {pending.id} is still pending after 0.2 s"):
        client.wait_for_task(pending.id, "upsert", timeout=0.2, poll_interval=0.05)


def test_reindex_tasks_through_the_client(indexed: EmbeddingStudioClient, tiny_models: tuple[str, str]) -> None:
    client = indexed
    first, _ = tiny_models
    created = client.create_reindex_task(first, batch_size=8, idempotency_key="re-1")
    assert created.status == "pending"
    assert client.create_reindex_task(first, idempotency_key="re-1").id == created.id
    conflicting = client.create_reindex_task(first)
    assert conflicting.status == "refused" and created.id in (conflicting.error or "")
    with pytest.raises(TaskEndedError, match="ended refused: reindex task"):
        client.wait_for_task(conflicting.id, "reindex", timeout=5)

    task = client.get_reindex_task(created.id)
    assert task.kind == "reindex" and task.params["dest_model_id"] == first and task.params["batch_size"] == 8
    assert client.cancel_reindex_task(created.id).status == "canceled"
    with pytest.raises(ApiError) as wrong_kind:
        client.get_fine_tuning_task(created.id)
    assert wrong_kind.value.status_code == 404
