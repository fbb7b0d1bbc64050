"""The deployment gate through the HTTP API and the Python client: its parameters in, its verdict out."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient

from embedding_studio.api.app import create_app
from embedding_studio.client import ApiError, EmbeddingStudioClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.worker_process import clear_queue  # noqa: E402

if TYPE_CHECKING:
    from embedding_studio.clickstream.dao import ClickstreamRepository
    from embedding_studio.tasks.repository import TaskRepository

pytestmark = pytest.mark.integration

NOT_DEPLOYED = "not deployed: NDCG@10 0.4100 against blue 0.4300"


@pytest.fixture()
def client(clean_db: str) -> Iterator[EmbeddingStudioClient]:
    clear_queue()
    with TestClient(create_app(run_migrations=False), base_url="http://testserver") as http_client:
        yield EmbeddingStudioClient("http://testserver", http_client=http_client)
    clear_queue()


def _released_batch(clickstream: ClickstreamRepository) -> int:
    clickstream.add_session(session_id="s1", query="water", results=["item-1", "item-2"])
    clickstream.add_events("s1", [{"event_id": "e1", "item_id": "item-2"}])
    return int(clickstream.release_batch().released_batch_id)


def test_the_openapi_schema_documents_the_gate(clean_db: str) -> None:
    with TestClient(create_app(run_migrations=False)) as http:
        schemas = http.get("/openapi.json").json()["components"]["schemas"]
    body = schemas["FineTuningTaskIn"]["properties"]
    assert body["force_deploy"]["default"] is False
    assert "not better than the blue" in body["force_deploy"]["description"]
    assert body["min_deploy_gain"]["minimum"] == 0 and body["min_deploy_gain"]["default"] == 0
    assert "blue model" in body["deploy_as_blue"]["description"]
    assert "deployment" in schemas["TaskOut"]["properties"]
    assert {"deployed", "reason", "metric", "candidate", "blue"} <= set(schemas["DeploymentOut"]["properties"])


def test_the_client_sends_the_gate_parameters_and_reads_the_verdict(
    client: EmbeddingStudioClient, task_repository: TaskRepository, clickstream_repository: ClickstreamRepository
) -> None:
    from embedding_studio.tasks import TaskStatus

    batch_id = _released_batch(clickstream_repository)
    created = client.create_fine_tuning_task(batch_id, deploy_as_blue=True, force_deploy=True, min_deploy_gain=0.05)
    params = task_repository.get_task(created.id).params
    assert params["deploy_as_blue"] is True and params["force_deploy"] is True and params["min_deploy_gain"] == 0.05

    with pytest.raises(ApiError) as negative:
        client.create_fine_tuning_task(batch_id, deploy_as_blue=True, min_deploy_gain=-0.1)
    assert negative.value.status_code == 422 and "min_deploy_gain" in str(negative.value.errors or negative.value)

    running = client.get_fine_tuning_task(created.id)
    assert running.deployment is None  # no verdict before the task ends
    verdict = {
        "deployed": False,
        "reason": NOT_DEPLOYED,
        "metric": "val_ndcg_at_10",
        "candidate": 0.41,
        "blue": 0.43,
        "blue_model_id": "base",
        "min_gain": 0.05,
        "forced": False,
    }
    task_repository.start_task(created.id)
    task_repository.finish_task(
        created.id,
        TaskStatus.done,
        best_run_id="f" * 32,
        result={"reindex_task_id": None, "deployment": verdict},
        message=NOT_DEPLOYED,
    )
    task = client.wait_for_task(created.id, "fine_tuning", timeout=5)
    assert task.status == "done" and task.progress_message == NOT_DEPLOYED
    assert task.deployment is not None and task.deployment.deployed is False
    assert task.deployment.reason == NOT_DEPLOYED and task.deployment.blue == 0.43
    assert task.result is not None and task.result["deployment"]["reason"] == NOT_DEPLOYED
    assert client.list_fine_tuning_tasks()[0].deployment == task.deployment
