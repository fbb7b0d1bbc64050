"""The whole loop through the HTTP API and a real worker: search → clicks → release → fine-tune → reindex → flip.

Searches run in a loop in a thread while the new model is built and deployed; every one must succeed.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.worker_process import clear_queue, start_worker, stop_worker, wait_for, write_catalog  # noqa: E402

if TYPE_CHECKING:
    from embedding_studio.vectordb import VectorStore

pytestmark = pytest.mark.e2e


@pytest.fixture()
def api(clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    from embedding_studio.api.app import create_app
    from embedding_studio.config import reset_settings

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("EMBEDDING_STUDIO_DEVICE", "cpu")
    monkeypatch.setenv("EMBEDDING_STUDIO_HPO_STARTUP_TRIALS", "1")
    reset_settings()
    clear_queue()
    return TestClient(create_app(run_migrations=False))


def test_fine_tune_and_deploy_through_the_api_with_searches_during_the_flip(
    api: TestClient, tmp_path: Path, vector_store: VectorStore
) -> None:
    from embedding_studio.models.tiny import tiny_model_directory
    from embedding_studio.tasks import LoaderSpec, index_catalog

    catalog = write_catalog(tmp_path / "corpus.jsonl", 40)
    base = str(tiny_model_directory(tmp_path / "base", seed=0, dim=32))
    loader = {"name": "jsonl_catalog", "options": {"path": str(catalog)}}

    # No model yet: search says why.
    refused = api.post("/api/v1/search", json={"query": "water"})
    assert refused.status_code == 503 and "no model is deployed" in refused.json()["detail"]
    index_catalog(base, LoaderSpec.model_validate(loader), store=vector_store)

    # Searches hand out session ids; the client reports clicks only.
    words = ["water", "music", "house", "river", "school", "mother", "animal", "city", "food", "tree"]
    for index in range(40):
        answer = api.post(
            "/api/v1/search", json={"query": f"{words[index % 10]} {words[(index * 3) % 10]}", "limit": 5}
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model_id"] == base and len(body["results"]) == 5
        clicked = body["results"][index % 3]["item_id"]
        events = api.post(
            f"/api/v1/clickstream/sessions/{body['session_id']}/events",
            json={"events": [{"event_id": f"e{index}", "item_id": clicked}]},
        )
        assert events.status_code in (200, 201), events.text
    batch_id = api.post("/api/v1/clickstream/batches/release").json()["released_batch_id"]

    # Bad requests are refused with a reason before anything is queued.
    unknown_batch = api.post("/api/v1/fine-tuning/tasks", json={"batch_id": 999})
    assert unknown_batch.status_code == 422 and "999" in unknown_batch.json()["detail"]
    collecting = api.post("/api/v1/fine-tuning/tasks", json={"batch_id": batch_id + 1})
    assert collecting.status_code == 422 and "release it" in collecting.json()["detail"]
    unknown_model = api.post(
        "/api/v1/fine-tuning/tasks", json={"batch_id": batch_id, "embedding_model_id": str(tmp_path / "nope")}
    )
    assert unknown_model.status_code == 422 and "does not exist" in unknown_model.json()["detail"]

    request = {
        "batch_id": batch_id,
        "embedding_model_id": base,
        "method_options": {"max_evals": 1, "num_epochs": 1, "loader": loader, "base_model": base},
        "deploy_as_blue": True,
        # This test is about the flip under searches, not whether the model beats blue on these few clicks
        # (the deployment gate has tests/tasks/test_deployment_gate*.py).
        "force_deploy": True,
        "idempotency_key": "first-fine-tuning",
    }
    created = api.post("/api/v1/fine-tuning/tasks", json=request)
    assert created.status_code == 202, created.text
    task_id = created.json()["id"]
    again = api.post("/api/v1/fine-tuning/tasks", json=request)
    assert again.status_code == 200 and again.json()["id"] == task_id

    failures: list[str] = []
    models_seen: set[str] = set()
    stop = threading.Event()

    def search_loop() -> None:
        while not stop.is_set():
            response = api.post("/api/v1/search", json={"query": "water river", "limit": 3})
            if response.status_code != 200:
                failures.append(f"{response.status_code}: {response.text}")
            else:
                models_seen.add(response.json()["model_id"])
            stop.wait(0.05)

    worker = start_worker(tmp_path / "worker.log")
    searcher = threading.Thread(target=search_loop)
    searcher.start()
    try:
        wait_for(
            lambda: api.get(f"/api/v1/fine-tuning/tasks/{task_id}").json()["status"] not in ("pending", "processing"),
            timeout=240,
            message="fine-tuning did not finish",
            log_path=tmp_path / "worker.log",
        )
        task = api.get(f"/api/v1/fine-tuning/tasks/{task_id}").json()
        assert task["status"] == "done", task["error"]
        best_run_id = task["best_run_id"]
        reindex_id = task["result"]["reindex_task_id"]
        wait_for(
            lambda: api.get(f"/api/v1/reindex/tasks/{reindex_id}").json()["status"] not in ("pending", "processing"),
            timeout=120,
            message="the deploying reindex did not finish",
            log_path=tmp_path / "worker.log",
        )
        reindex = api.get(f"/api/v1/reindex/tasks/{reindex_id}").json()
        assert reindex["status"] == "done", reindex["error"]
        assert reindex["parent_id"] == task_id and reindex["params"]["dest_model_id"] == best_run_id
        wait_for(lambda: best_run_id in models_seen, timeout=30, message="searches never reached the new model")
    finally:
        stop.set()
        searcher.join()
        stop_worker(worker)
    assert not failures, failures[:3]
    assert models_seen == {base, best_run_id}

    models = api.get("/api/v1/models").json()
    assert models["blue_model_id"] == best_run_id and models["previous_blue_model_id"] == base
    assert [model["id"] for model in models["models"] if model["is_blue"]] == [best_run_id]
    assert api.post("/api/v1/search", json={"query": "water"}).json()["model_id"] == best_run_id

    listed = api.get("/api/v1/fine-tuning/tasks").json()["tasks"]
    assert [item["id"] for item in listed] == [task_id]
    done_cancel = api.post(f"/api/v1/fine-tuning/tasks/{task_id}/cancel")
    assert done_cancel.status_code == 409 and "already done" in done_cancel.json()["detail"]
    assert api.get("/api/v1/fine-tuning/tasks/nope").status_code == 404
