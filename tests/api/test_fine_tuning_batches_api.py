"""POST /fine-tuning/tasks choosing batches: batch_id, batch_ids or since_blue, refused with the id at fault."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.worker_process import clear_queue  # noqa: E402

if TYPE_CHECKING:
    from embedding_studio.clickstream.dao import ClickstreamRepository

pytestmark = pytest.mark.integration


@pytest.fixture()
def api(clean_db: str) -> Iterator[TestClient]:
    from embedding_studio.api.app import create_app

    clear_queue()
    yield TestClient(create_app(run_migrations=False))
    clear_queue()


def _release(clickstream: ClickstreamRepository) -> int:
    return int(clickstream.release_batch().released_batch_id)


def test_a_batch_that_is_not_released_is_refused_naming_it_and_the_release_command(
    api: TestClient, clickstream_repository: ClickstreamRepository
) -> None:
    released = _release(clickstream_repository)
    answer = api.post("/api/v1/fine-tuning/tasks", json={"batch_ids": [released, 987]})
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert "987" in body["detail"] and "`embedding-studio clickstream release`" in body["detail"]
    assert body["errors"][0]["field"] == "batch_ids"

    collecting = released + 1
    answer = api.post("/api/v1/fine-tuning/tasks", json={"batch_id": collecting})
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "batch_id"
    assert f"batch {collecting} is still 'collecting'" in answer.json()["detail"]


def test_the_batches_are_chosen_one_way_only(api: TestClient) -> None:
    for body in ({}, {"batch_id": 1, "since_blue": True}, {"batch_ids": [1, 1]}, {"batch_ids": []}):
        answer = api.post("/api/v1/fine-tuning/tasks", json=body)
        assert answer.status_code == 422, (body, answer.text)
    refused = api.post("/api/v1/fine-tuning/tasks", json={"since_blue": True})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "since_blue"
    assert "clickstream release" in refused.json()["detail"]


def test_several_released_batches_and_since_blue_are_accepted_as_sent(
    api: TestClient, clickstream_repository: ClickstreamRepository
) -> None:
    first, second = _release(clickstream_repository), _release(clickstream_repository)
    created = api.post("/api/v1/fine-tuning/tasks", json={"batch_ids": [second, first], "replay_share": 0.3})
    assert created.status_code == 202, created.text
    task = api.get(f"/api/v1/fine-tuning/tasks/{created.json()['id']}").json()
    assert task["params"]["batch_ids"] == [second, first] and task["params"]["replay_share"] == 0.3

    since_blue = api.post("/api/v1/fine-tuning/tasks", json={"since_blue": True})
    assert since_blue.status_code == 202, since_blue.text  # no blue model yet: every released batch
    assert api.post("/api/v1/fine-tuning/tasks", json={"batch_id": first}).status_code == 202
