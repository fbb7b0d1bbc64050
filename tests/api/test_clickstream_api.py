"""The clickstream HTTP contract, through the real ASGI app on the real embedded PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from embedding_studio.api.app import create_app
from embedding_studio.config import reset_settings

pytestmark = pytest.mark.integration

SESSIONS = "/api/v1/clickstream/sessions"


@pytest.fixture()
def client(clean_db: str) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def _session(session_id: str = "s1", **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {"session_id": session_id, "query": "red shoes", "results": ["a", "b", "c"]}
    body.update(overrides)
    return body


def test_session_post_is_idempotent_and_conflicts_are_409(client: TestClient) -> None:
    first = client.post(SESSIONS, json=_session(user_id="u1", payload={"page": 1}))
    assert first.status_code == 201, first.text
    assert first.json()["session_id"] == "s1" and first.json()["created"] is True
    batch_id = first.json()["batch_id"]

    again = client.post(SESSIONS, json=_session(user_id="u1", payload={"page": 1}))
    assert again.status_code == 200
    assert again.json() == {"session_id": "s1", "batch_id": batch_id, "created": False}

    conflict = client.post(SESSIONS, json=_session(user_id="u2", payload={"page": 1}))
    assert conflict.status_code == 409
    assert "'s1'" in conflict.json()["detail"] and "user_id" in conflict.json()["detail"]
    assert client.get(f"/api/v1/clickstream/batches/{batch_id}").json()["session_count"] == 1


def test_query_may_be_a_json_object(client: TestClient) -> None:
    query = {"text": "shoes", "filters": {"color": "red"}}
    assert client.post(SESSIONS, json=_session(query=query)).status_code == 201
    assert client.get(f"{SESSIONS}/s1").json()["query"] == query


def test_events_repeats_ignored_and_unknown_item_named(client: TestClient) -> None:
    client.post(SESSIONS, json=_session())
    events = {"events": [{"event_id": "e1", "item_id": "b"}, {"event_id": "e2", "item_id": "c", "event_type": "view"}]}
    created = client.post(f"{SESSIONS}/s1/events", json=events)
    assert created.status_code == 201 and created.json() == {"session_id": "s1", "inserted": 2}
    repeated = client.post(f"{SESSIONS}/s1/events", json=events)
    assert repeated.status_code == 201 and repeated.json()["inserted"] == 0

    not_shown = client.post(f"{SESSIONS}/s1/events", json={"events": [{"event_id": "e3", "item_id": "zz-top"}]})
    assert not_shown.status_code == 422
    assert "'zz-top'" in not_shown.json()["detail"]
    assert not_shown.json()["errors"][0]["field"] == "events.item_id"

    unknown = client.post(f"{SESSIONS}/ghost/events", json={"events": [{"event_id": "e4", "item_id": "a"}]})
    assert unknown.status_code == 404 and "'ghost'" in unknown.json()["detail"]
    stored = client.get(f"{SESSIONS}/s1").json()
    assert [(event["event_id"], event["event_type"]) for event in stored["events"]] == [("e1", "click"), ("e2", "view")]


def test_event_ids_are_per_session_and_a_reused_id_is_409(client: TestClient) -> None:
    client.post(SESSIONS, json=_session("s1"))
    client.post(SESSIONS, json=_session("s2"))
    # Two clients numbering their events per session: both first clicks are kept.
    for session_id in ("s1", "s2"):
        answer = client.post(f"{SESSIONS}/{session_id}/events", json={"events": [{"event_id": "e1", "item_id": "a"}]})
        assert answer.status_code == 201 and answer.json() == {"session_id": session_id, "inserted": 1}
    assert [event["event_id"] for event in client.get(f"{SESSIONS}/s2").json()["events"]] == ["e1"]

    reused = {"events": [{"event_id": "e2", "item_id": "c"}, {"event_id": "e1", "item_id": "b"}]}
    conflict = client.post(f"{SESSIONS}/s1/events", json=reused)
    assert conflict.status_code == 409
    assert "'e1'" in conflict.json()["detail"] and "'s1'" in conflict.json()["detail"]
    assert [event["event_id"] for event in client.get(f"{SESSIONS}/s1").json()["events"]] == ["e1"]  # no e2

    twice = {"events": [{"event_id": "e5", "item_id": "a"}, {"event_id": "e5", "item_id": "b"}]}
    refused = client.post(f"{SESSIONS}/s1/events", json=twice)
    assert refused.status_code == 422 and "'e5'" in refused.json()["errors"][0]["reason"]


def test_irrelevant(client: TestClient) -> None:
    client.post(SESSIONS, json=_session())
    marked = client.post(f"{SESSIONS}/s1/irrelevant")
    assert marked.status_code == 200 and marked.json() == {"session_id": "s1", "is_irrelevant": True}
    assert client.post(f"{SESSIONS}/nope/irrelevant").status_code == 404
    assert client.get(f"{SESSIONS}/nope").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"session_id": "s1", "query": "q", "results": "a,b"}, "results"),
        ({"session_id": "s1", "query": "q", "results": [1, 2]}, "results.0"),
        ({"session_id": 5, "query": "q", "results": []}, "session_id"),
        ({"query": "q", "results": []}, "session_id"),
        ({"session_id": "s1", "query": "q", "results": ["a", "a"]}, "results"),
        ({"session_id": "s1", "query": "  ", "results": ["a"]}, "query"),
        ({"session_id": "s1", "query": 7, "results": ["a"]}, "query.str"),
        ({"session_id": "s1", "query": "q", "results": [], "created_at": "yesterday"}, "created_at"),
        ({"session_id": "s1", "query": "q", "results": [], "resluts": []}, "resluts"),
        ([1, 2, 3], "body"),
    ],
)
def test_wrong_types_are_422_naming_the_field(client: TestClient, body: object, field: str) -> None:
    response = client.post(SESSIONS, json=body)
    assert response.status_code == 422, response.text
    assert field in {error["field"] for error in response.json()["errors"]}


def test_malformed_json_is_4xx_not_500(client: TestClient) -> None:
    for path in (SESSIONS, f"{SESSIONS}/s1/events", "/api/v1/clickstream/bulk"):
        response = client.post(path, content=b'{"session_id": "s1", ', headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert response.json()["detail"] == "malformed JSON body"
    assert client.post(SESSIONS, content=b"", headers={"content-type": "application/json"}).status_code == 422
    # Batch ids are numbers in the route itself, so /batches/release stays a POST-only path (GET is a 405).
    assert client.get("/api/v1/clickstream/batches/not-a-number").status_code == 404
    assert client.get("/api/v1/clickstream/batches/release").status_code == 405
    assert client.get("/api/v1/clickstream/batches/999999").status_code == 404
    bad_events = client.post(f"{SESSIONS}/s1/events", json={"events": [{"item_id": "a"}]})
    assert bad_events.status_code == 422 and bad_events.json()["errors"][0]["field"] == "events.0.event_id"


def test_nul_characters_in_json_payloads_are_422_naming_where_and_nothing_is_stored(client: TestClient) -> None:
    refused = client.post(SESSIONS, json=_session(payload={"tags": [{"a\u0000b": 1}]}))
    assert refused.status_code == 422, refused.text
    assert "NUL" in refused.json()["errors"][0]["reason"] and "'a\\x00b'" in refused.json()["errors"][0]["reason"]
    assert client.get(f"{SESSIONS}/s1").status_code == 404

    assert client.post(SESSIONS, json=_session()).status_code == 201
    events = client.post(
        f"{SESSIONS}/s1/events", json={"events": [{"event_id": "e1", "item_id": "a", "payload": {"k": "v\u0000"}}]}
    )
    assert events.status_code == 422, events.text
    assert client.get(f"{SESSIONS}/s1").json()["events"] == []
    dict_query = client.post(SESSIONS, json=_session("s2", query={"text": "x\u0000"}))
    assert dict_query.status_code == 422, dict_query.text


def test_bulk_rejects_bad_records_without_sinking_good_ones(client: TestClient) -> None:
    client.post(SESSIONS, json=_session("taken"))
    sessions = [
        _session("b1", events=[{"event_id": "b1-e1", "item_id": "a"}]),
        _session("b2", results=[3]),
        _session("b3", events=[{"event_id": "b3-e1", "item_id": "nowhere"}]),
        _session("taken", query="another query"),
        _session("taken"),
        42,
    ]
    response = client.post("/api/v1/clickstream/bulk", json={"sessions": sessions})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["inserted"], body["duplicates"], body["events_inserted"]) == (1, 1, 1)
    rejected = {item["index"]: item for item in body["rejected"]}
    assert sorted(rejected) == [1, 2, 3, 5]
    assert rejected[1]["session_id"] == "b2" and "results.0" in rejected[1]["reason"]
    assert "'nowhere'" in rejected[2]["reason"]
    assert "query" in rejected[3]["reason"]
    assert rejected[5]["session_id"] is None
    assert client.post("/api/v1/clickstream/bulk", json={"sessions": "nope"}).status_code == 422


def test_release_and_list_batches(client: TestClient) -> None:
    client.post("/api/v1/clickstream/bulk", json={"sessions": [_session("x1"), _session("x2")]})
    released = client.post("/api/v1/clickstream/batches/release")
    assert released.status_code == 200
    release = released.json()
    assert release["session_count"] == 2
    after = client.post(SESSIONS, json=_session("x3")).json()
    assert after["batch_id"] == release["next_batch_id"]
    batches = client.get("/api/v1/clickstream/batches").json()
    assert [(batch["id"], batch["status"], batch["session_count"]) for batch in batches] == [
        (release["next_batch_id"], "collecting", 1),
        (release["released_batch_id"], "released", 2),
    ]
    one = client.get(f"/api/v1/clickstream/batches/{release['released_batch_id']}").json()
    assert one["status"] == "released" and one["released_at"] is not None


def test_api_keys_once_configured(clean_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDING_STUDIO_API_KEYS", '["k-secret"]')
    reset_settings()
    try:
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            assert client.get("/health").status_code == 200
            assert client.get("/api/v1/clickstream/batches").status_code == 401
            wrong = client.get("/api/v1/clickstream/batches", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            assert client.post(SESSIONS, json=_session()).status_code == 401
            ok = client.post(SESSIONS, json=_session(), headers={"Authorization": "Bearer k-secret"})
            assert ok.status_code == 201
    finally:
        monkeypatch.delenv("EMBEDDING_STUDIO_API_KEYS")
        reset_settings()
    assert "DATABASE_URL" in os.environ
