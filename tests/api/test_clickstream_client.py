"""The Python client against the real app (in-process over ASGI) and the real database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from embedding_studio.api.app import create_app
from embedding_studio.client import ApiError, EmbeddingStudioClient

pytestmark = pytest.mark.integration


@pytest.fixture()
def client(clean_db: str) -> Iterator[EmbeddingStudioClient]:
    with TestClient(create_app(), base_url="http://testserver") as http_client:
        yield EmbeddingStudioClient("http://testserver", http_client=http_client)


def test_client_round_trip(client: EmbeddingStudioClient) -> None:
    assert client.health()["status"] == "ok"
    created = client.add_session("s/1 with space", "red shoes", ["a", "b"], user_id="u1", payload={"page": 2})
    assert created.created and created.session_id == "s/1 with space"
    assert not client.add_session("s/1 with space", "red shoes", ["a", "b"], user_id="u1", payload={"page": 2}).created
    assert client.add_click("s/1 with space", "e1", "b").inserted == 1
    assert client.mark_irrelevant("s/1 with space").is_irrelevant
    stored = client.get_session("s/1 with space")
    assert [event.item_id for event in stored.events] == ["b"] and stored.is_irrelevant

    bulk = client.bulk_add([{"session_id": "s2", "query": "q", "results": ["x"]}, {"session_id": "s3"}])
    assert bulk.inserted == 1 and [rejected.index for rejected in bulk.rejected] == [1]

    release = client.release_batch()
    assert release.session_count == 2
    assert client.get_batch(release.released_batch_id).status == "released"
    assert [batch.id for batch in client.list_batches()] == [release.next_batch_id, release.released_batch_id]


def test_client_errors_carry_status_and_reason(client: EmbeddingStudioClient) -> None:
    client.add_session("s1", "q", ["a"])
    with pytest.raises(ApiError) as conflict:
        client.add_session("s1", "other", ["a"])
    assert conflict.value.status_code == 409 and "'s1'" in conflict.value.detail
    with pytest.raises(ApiError) as not_shown:
        client.add_click("s1", "e1", "zz")
    assert not_shown.value.status_code == 422 and "'zz'" in not_shown.value.detail
    assert not_shown.value.errors[0]["field"] == "events.item_id"
    with pytest.raises(ApiError) as missing:
        client.get_batch(424242)
    assert missing.value.status_code == 404
