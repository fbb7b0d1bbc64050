"""``POST /search`` and ``/models`` on the real database with tiny models indexed in this process."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.worker_process import write_catalog  # noqa: E402

if TYPE_CHECKING:
    from embedding_studio.clickstream.dao import ClickstreamRepository
    from embedding_studio.vectordb import VectorStore


@pytest.fixture()
def indexed(clean_db: str, tmp_path: Path, vector_store: VectorStore) -> tuple[TestClient, str, str]:
    from embedding_studio.api.app import create_app
    from embedding_studio.models.tiny import tiny_model_directory
    from embedding_studio.tasks import LoaderSpec, ReindexTaskParams, index_catalog, run_reindex

    catalog = write_catalog(tmp_path / "corpus.jsonl", 20)
    first = str(tiny_model_directory(tmp_path / "a", seed=0))
    second = str(tiny_model_directory(tmp_path / "b", seed=1))
    index_catalog(first, LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)}), store=vector_store)
    run_reindex(ReindexTaskParams(dest_model_id=second, deploy_as_blue=True), store=vector_store)
    return TestClient(create_app(run_migrations=False)), first, second


def test_search_records_the_session_it_answers_with(indexed: tuple[TestClient, str, str]) -> None:
    client, _, second = indexed
    answer = client.post("/api/v1/search", json={"query": "water river", "limit": 4, "user_id": "u1"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_id"] == second and len(body["results"]) == 4
    scores = [result["score"] for result in body["results"]]
    assert scores == sorted(scores, reverse=True)
    session = client.get(f"/api/v1/clickstream/sessions/{body['session_id']}").json()
    assert session["results"] == [result["item_id"] for result in body["results"]]
    assert session["user_id"] == "u1"
    assert session["rank_offset"] == 0
    page_two = client.post("/api/v1/search", json={"query": "water river", "limit": 2, "offset": 2}).json()
    assert [r["item_id"] for r in page_two["results"]] == [r["item_id"] for r in body["results"][2:4]]


def test_a_later_page_is_recorded_at_its_true_ranks(
    indexed: tuple[TestClient, str, str], clickstream_repository: ClickstreamRepository
) -> None:
    """Propensities are estimated from the ranks results were shown at: page two starts at rank 3, not 1."""
    from embedding_studio.clickstream.converter import ClickstreamConverter

    client, _, _ = indexed
    whole = client.post("/api/v1/search", json={"query": "water river", "limit": 5}).json()
    page_two = client.post("/api/v1/search", json={"query": "water river", "limit": 2, "offset": 2}).json()
    shown = [result["item_id"] for result in page_two["results"]]
    assert shown == [result["item_id"] for result in whole["results"][2:4]]
    stored = client.get(f"/api/v1/clickstream/sessions/{page_two['session_id']}").json()
    assert stored["results"] == shown and stored["rank_offset"] == 2
    clicked = client.post(
        f"/api/v1/clickstream/sessions/{page_two['session_id']}/events",
        json={"events": [{"event_id": "e1", "item_id": shown[1]}]},
    )
    assert clicked.status_code == 201

    converted = ClickstreamConverter().convert(clickstream_repository.get_session(page_two["session_id"]))
    assert converted is not None
    assert converted.ranks == {shown[0]: 3, shown[1]: 4}
    first_page = ClickstreamConverter().convert(clickstream_repository.get_session(whole["session_id"]))
    assert first_page is not None and list(first_page.ranks.values()) == [1, 2, 3, 4, 5]


def test_search_validates_its_body(indexed: tuple[TestClient, str, str]) -> None:
    client, _, _ = indexed
    for body in ({"query": ""}, {"query": "x", "limit": 0}, {"query": "x", "offset": -1}, {"limit": 3}):
        response = client.post("/api/v1/search", json=body)
        assert response.status_code == 422 and response.json()["errors"], body


def test_models_list_marks_blue_and_rollback_flips_back(indexed: tuple[TestClient, str, str]) -> None:
    client, first, second = indexed
    models = client.get("/api/v1/models").json()
    assert models["blue_model_id"] == second and models["previous_blue_model_id"] == first
    assert {model["id"]: model["is_blue"] for model in models["models"]} == {first: False, second: True}
    wrong = client.post(f"/api/v1/models/{first}/rollback")
    assert wrong.status_code == 409 and "not the blue model" in wrong.json()["detail"]
    assert client.post("/api/v1/models/never-indexed/rollback").status_code == 404
    rolled = client.post(f"/api/v1/models/{second}/rollback")
    assert rolled.status_code == 200 and rolled.json()["blue_model_id"] == first
    assert client.post("/api/v1/search", json={"query": "water"}).json()["model_id"] == first


def test_the_api_encodes_on_the_configured_number_of_cpu_threads(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from embedding_studio.api.app import create_app
    from embedding_studio.config import reset_settings

    before = torch.get_num_threads()
    wanted = 2 if before != 2 else 3
    monkeypatch.setenv("EMBEDDING_STUDIO_SEARCH_CPU_THREADS", str(wanted))
    reset_settings()
    try:
        with TestClient(create_app(run_migrations=False)):
            # OpenMP keeps the count per thread: the threads that later serve requests see the new one.
            seen: list[int] = []
            request_thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
            request_thread.start()
            request_thread.join()
            assert seen == [wanted]
    finally:
        torch.set_num_threads(before)
        monkeypatch.delenv("EMBEDDING_STUDIO_SEARCH_CPU_THREADS")
        reset_settings()


def test_results_carry_their_display_payload_and_record_false_records_nothing(
    indexed: tuple[TestClient, str, str], clickstream_repository: ClickstreamRepository
) -> None:
    """A person can judge a result by its title and snippet; a search nobody is shown leaves no session."""

    client, _, _ = indexed
    body = client.post("/api/v1/search", json={"query": "water river", "limit": 3, "record": False}).json()
    assert body["session_id"] is None and len(body["results"]) == 3
    for result in body["results"]:
        assert set(result["payload"]) == {"title", "snippet"} and result["payload"]["snippet"]
    assert sum(batch.session_count for batch in clickstream_repository.list_batches()) == 0
    health = client.get("/health").json()
    assert health["status"] == "ok" and len(health["database_id"]) == 16
