"""The clickstream store against the real embedded PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from embedding_studio.clickstream.dao import (
    ClickstreamRepository,
    EventConflictError,
    InvalidRecordError,
    ItemNotInResultsError,
    SessionConflictError,
    UnknownBatchError,
    UnknownSessionError,
)

pytestmark = pytest.mark.integration


def _record(session_id: str, clicks: list[str] | None = None, **overrides: object) -> dict[str, object]:
    results = [f"{session_id}-item-{rank}" for rank in range(1, 6)]
    record: dict[str, object] = {
        "session_id": session_id,
        "query": f"query of {session_id}",
        "results": results,
        "events": [
            {"event_id": f"{session_id}-click-{number}", "item_id": item_id}
            for number, item_id in enumerate(clicks or [])
        ],
    }
    record.update(overrides)
    return record


def test_add_session_is_idempotent_and_detects_conflicts(
    clean_db: str, clickstream_repository: ClickstreamRepository
) -> None:
    created_at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    session, created = clickstream_repository.add_session(
        "s1", {"text": "red shoes", "filters": {"size": 42}}, ["a", "b", "c"], user_id="u1", created_at=created_at
    )
    assert created
    assert session.batch_id == clickstream_repository.get_collecting_batch().id
    assert session.query == {"text": "red shoes", "filters": {"size": 42}}
    assert session.results == ["a", "b", "c"]
    assert session.created_at == created_at

    again, created_again = clickstream_repository.add_session(
        "s1", {"text": "red shoes", "filters": {"size": 42}}, ["a", "b", "c"], user_id="u1", created_at=created_at
    )
    assert not created_again
    assert again.session_id == "s1" and again.created_at == created_at

    with pytest.raises(SessionConflictError, match="'s1'.*results"):
        clickstream_repository.add_session(
            "s1", {"text": "red shoes", "filters": {"size": 42}}, ["a", "c"], user_id="u1"
        )
    with pytest.raises(SessionConflictError, match="created_at"):
        clickstream_repository.add_session(
            "s1",
            {"text": "red shoes", "filters": {"size": 42}},
            ["a", "b", "c"],
            user_id="u1",
            created_at=created_at + timedelta(seconds=1),
        )
    assert clickstream_repository.count_batch_sessions(session.batch_id) == 1


def test_naive_timestamps_are_utc_and_resend_without_created_at_is_a_duplicate(
    clean_db: str, clickstream_repository: ClickstreamRepository
) -> None:
    session, _ = clickstream_repository.add_session("s1", "q", ["a"], created_at=datetime(2025, 5, 1, 12, 0))
    assert session.created_at == datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    _, created = clickstream_repository.add_session("s1", "q", ["a"])
    assert not created


def test_add_events_ignores_repeats_and_rejects_unknown_items(
    clean_db: str, clickstream_repository: ClickstreamRepository
) -> None:
    clickstream_repository.add_session("s1", "q", ["a", "b", "c"])
    assert clickstream_repository.add_events("s1", [{"event_id": "e1", "item_id": "b"}]) == 1
    repeated_and_new = [{"event_id": "e1", "item_id": "b"}, {"event_id": "e2", "item_id": "a"}]
    assert clickstream_repository.add_events("s1", repeated_and_new) == 1
    with pytest.raises(ItemNotInResultsError, match="'zzz'.*'s1'"):
        clickstream_repository.add_events(
            "s1", [{"event_id": "e3", "item_id": "a"}, {"event_id": "e4", "item_id": "zzz"}]
        )
    with pytest.raises(UnknownSessionError, match="'nope'"):
        clickstream_repository.add_events("nope", [{"event_id": "e5", "item_id": "a"}])
    stored = clickstream_repository.get_session("s1")
    assert [event.event_id for event in stored.events] == ["e1", "e2"]  # e3 was not half-written
    assert all(event.event_type == "click" for event in stored.events)


def test_rank_offset_is_stored_compared_and_bulk_loaded(
    clean_db: str, clickstream_repository: ClickstreamRepository
) -> None:
    stored, created = clickstream_repository.add_session("page-2", "q", ["k", "l"], rank_offset=10)
    assert created and stored.rank_offset == 10
    assert clickstream_repository.add_session("page-2", "q", ["k", "l"], rank_offset=10)[1] is False
    with pytest.raises(SessionConflictError, match="rank_offset"):
        clickstream_repository.add_session("page-2", "q", ["k", "l"])
    with pytest.raises(InvalidRecordError, match="rank_offset"):
        clickstream_repository.add_session("negative", "q", ["k"], rank_offset=-1)
    result = clickstream_repository.bulk_add([_record("bulk-page-3", rank_offset=20), _record("bulk-page-1")])
    assert (result.inserted, result.rejected) == (2, [])
    assert clickstream_repository.get_session("bulk-page-3").rank_offset == 20
    assert clickstream_repository.get_session("bulk-page-1").rank_offset == 0
    assert clickstream_repository.get_session("page-2").rank_offset == 10


def test_event_ids_are_unique_within_their_session_not_across_sessions(
    clean_db: str, clickstream_repository: ClickstreamRepository
) -> None:
    # The README's own example: every client numbers its events per session, starting at "e1".
    clickstream_repository.add_session("s1", "q", ["a", "b"])
    clickstream_repository.add_session("s2", "q", ["a", "b"])
    assert clickstream_repository.add_events("s1", [{"event_id": "e1", "item_id": "a"}]) == 1
    assert clickstream_repository.add_events("s2", [{"event_id": "e1", "item_id": "b"}]) == 1
    assert [(event.event_id, event.item_id) for event in clickstream_repository.get_session("s1").events] == [
        ("e1", "a")
    ]
    assert [(event.event_id, event.item_id) for event in clickstream_repository.get_session("s2").events] == [
        ("e1", "b")
    ]


def test_a_resent_event_is_a_no_op_and_a_different_body_is_refused_whole(
    clean_db: str, clickstream_repository: ClickstreamRepository
) -> None:
    clickstream_repository.add_session("s1", "q", ["a", "b", "c"])
    at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    first = [{"event_id": "e1", "item_id": "a", "created_at": at, "payload": {"dwell": 3}}]
    assert clickstream_repository.add_events("s1", first) == 1
    assert clickstream_repository.add_events("s1", first) == 0
    # Without created_at the server stamps it, so a resend without one is still the same event.
    assert clickstream_repository.add_events("s1", [{"event_id": "e1", "item_id": "a", "payload": {"dwell": 3}}]) == 0
    # Stored ids are compared, new ones go in: one request may mix both.
    assert clickstream_repository.add_events("s1", [*first, {"event_id": "e2", "item_id": "b"}]) == 1

    with pytest.raises(EventConflictError, match=r"'e1' \(differs in: item_id, payload\).*'s1'") as raised:
        clickstream_repository.add_events(
            "s1", [{"event_id": "e3", "item_id": "c"}, {"event_id": "e1", "item_id": "b"}]
        )
    assert raised.value.session_id == "s1" and raised.value.differences == {"e1": ["item_id", "payload"]}
    with pytest.raises(EventConflictError, match="event_type"):
        clickstream_repository.add_events("s1", [{"event_id": "e2", "item_id": "b", "event_type": "view"}])
    with pytest.raises(EventConflictError, match="created_at"):
        clickstream_repository.add_events("s1", [{**first[0], "created_at": at + timedelta(seconds=1)}])
    stored = clickstream_repository.get_session("s1")
    assert [(event.event_id, event.item_id) for event in stored.events] == [("e1", "a"), ("e2", "b")]  # no e3


def test_one_request_naming_an_event_id_twice(clean_db: str, clickstream_repository: ClickstreamRepository) -> None:
    clickstream_repository.add_session("s1", "q", ["a", "b"])
    same_twice = [{"event_id": "e1", "item_id": "a"}, {"event_id": "e1", "item_id": "a"}]
    assert clickstream_repository.add_events("s1", same_twice) == 1
    with pytest.raises(InvalidRecordError, match="'e9'.*item_id.*twice"):
        clickstream_repository.add_events(
            "s1", [{"event_id": "e9", "item_id": "a"}, {"event_id": "e9", "item_id": "b"}]
        )
    assert [event.event_id for event in clickstream_repository.get_session("s1").events] == ["e1"]


def test_concurrent_writers_of_one_event_id_store_one_body_and_drop_nothing_acknowledged(
    clean_db: str, clickstream_repository: ClickstreamRepository
) -> None:
    clickstream_repository.add_session("s1", "q", ["a", "b"])
    writers = 12
    barrier = threading.Barrier(writers)
    outcomes: dict[int, int | EventConflictError] = {}
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        # Every writer sends the shared id (two bodies in play) and an id of its own.
        events = [
            {"event_id": "shared", "item_id": "a" if writer % 2 else "b"},
            {"event_id": f"own-{writer}", "item_id": "a"},
        ]
        barrier.wait()
        try:
            outcomes[writer] = clickstream_repository.add_events("s1", events)
        except EventConflictError as error:
            outcomes[writer] = error
        except BaseException as error:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    stored = {event.event_id: event.item_id for event in clickstream_repository.get_session("s1").events}
    winner_item = stored["shared"]
    for writer, outcome in outcomes.items():
        agrees = ("a" if writer % 2 else "b") == winner_item
        if agrees:
            assert outcome in (1, 2) and f"own-{writer}" in stored  # acknowledged, so stored
        else:
            assert isinstance(outcome, EventConflictError) and f"own-{writer}" not in stored  # refused whole
    assert sum(1 for outcome in outcomes.values() if outcome == 2) == 1  # one request stored "shared"


def test_invalid_arguments_are_named(clean_db: str, clickstream_repository: ClickstreamRepository) -> None:
    with pytest.raises(InvalidRecordError, match="results"):
        clickstream_repository.add_session("s1", "q", ["a", "a"])
    clickstream_repository.add_session("s1", "q", ["a"])
    with pytest.raises(InvalidRecordError, match="event_id"):
        clickstream_repository.add_events("s1", [{"item_id": "a"}])
    assert clickstream_repository.add_events("s1", []) == 0
    with pytest.raises(UnknownSessionError):
        clickstream_repository.add_events("ghost", [])


def test_mark_irrelevant(clean_db: str, clickstream_repository: ClickstreamRepository) -> None:
    clickstream_repository.add_session("s1", "q", ["a"])
    assert clickstream_repository.mark_irrelevant("s1").is_irrelevant
    assert clickstream_repository.get_session("s1").is_irrelevant
    with pytest.raises(UnknownSessionError):
        clickstream_repository.mark_irrelevant("missing")


def test_bulk_add_rejects_bad_records_and_keeps_good_ones(
    clean_db: str, clickstream_repository: ClickstreamRepository
) -> None:
    clickstream_repository.add_session("existing", "old query", ["x"])
    records = [
        _record("good-1", clicks=["good-1-item-2"]),
        {"session_id": "bad-type", "query": "q", "results": "not a list"},
        _record("good-2", clicks=["good-2-item-1", "good-2-item-3"]),
        _record("bad-click", clicks=["elsewhere"]),
        {"session_id": "existing", "query": "new query", "results": ["x"]},
        _record("good-1", clicks=["good-1-item-2"]),  # same record again in the request
        "not an object",
        _record("good-2", query="changed"),
    ]
    result = clickstream_repository.bulk_add(records)
    assert result.inserted == 2
    assert result.duplicates == 1
    assert result.events_inserted == 3
    reasons = {rejected.index: (rejected.session_id, rejected.reason) for rejected in result.rejected}
    assert set(reasons) == {1, 3, 4, 6, 7}
    assert reasons[1][0] == "bad-type" and "results" in reasons[1][1]
    assert "'elsewhere'" in reasons[3][1]
    assert reasons[4][0] == "existing" and "query" in reasons[4][1]
    assert reasons[6] == (None, "a session record must be a JSON object, got str")
    assert reasons[7][0] == "good-2" and "query" in reasons[7][1]

    again = clickstream_repository.bulk_add([_record("good-1", clicks=["good-1-item-2"]), _record("good-3")])
    assert (again.inserted, again.duplicates, again.events_inserted, again.rejected) == (1, 1, 0, [])
    assert clickstream_repository.get_session("existing").query == "old query"


def test_bulk_keys_events_by_session_and_rejects_a_reused_event_id_whole(
    clean_db: str, clickstream_repository: ClickstreamRepository
) -> None:
    first = clickstream_repository.bulk_add(
        [
            _record("s1", events=[{"event_id": "e1", "item_id": "s1-item-1"}]),
            _record("s2", events=[{"event_id": "e1", "item_id": "s2-item-2"}]),
        ]
    )
    assert (first.inserted, first.events_inserted, first.rejected) == (2, 2, [])

    resent = clickstream_repository.bulk_add(
        [
            # The same session and event again, plus a new event: the new one is stored.
            _record(
                "s1",
                events=[{"event_id": "e1", "item_id": "s1-item-1"}, {"event_id": "e2", "item_id": "s1-item-3"}],
            ),
            # e1 of s2 now names another item: the record is refused, its new e3 with it.
            _record(
                "s2",
                events=[{"event_id": "e3", "item_id": "s2-item-1"}, {"event_id": "e1", "item_id": "s2-item-5"}],
            ),
            # Two records of one new session that disagree about e1: the later one is refused.
            _record("s3", events=[{"event_id": "e1", "item_id": "s3-item-1"}]),
            _record("s3", events=[{"event_id": "e1", "item_id": "s3-item-4"}]),
        ]
    )
    assert (resent.inserted, resent.duplicates, resent.events_inserted) == (1, 1, 2)
    reasons = {rejected.index: rejected.reason for rejected in resent.rejected}
    assert set(reasons) == {1, 3}
    assert "'e1'" in reasons[1] and "'s2'" in reasons[1] and "item_id" in reasons[1]
    assert "'e1'" in reasons[3] and "'s3'" in reasons[3]
    assert [event.event_id for event in clickstream_repository.get_session("s1").events] == ["e1", "e2"]
    assert [(event.event_id, event.item_id) for event in clickstream_repository.get_session("s2").events] == [
        ("e1", "s2-item-2")
    ]
    assert [(event.event_id, event.item_id) for event in clickstream_repository.get_session("s3").events] == [
        ("e1", "s3-item-1")
    ]

    in_one_record = clickstream_repository.bulk_add(
        [_record("s4", events=[{"event_id": "x", "item_id": "s4-item-1"}, {"event_id": "x", "item_id": "s4-item-2"}])]
    )
    assert in_one_record.inserted == 0 and "'x'" in in_one_record.rejected[0].reason


def test_release_batch_opens_the_next_one(clean_db: str, clickstream_repository: ClickstreamRepository) -> None:
    clickstream_repository.bulk_add([_record(f"s{number}") for number in range(3)])
    first = clickstream_repository.get_collecting_batch()
    release = clickstream_repository.release_batch()
    assert release.released_batch_id == first.id
    assert release.session_count == 3
    assert release.next_batch_id != first.id
    released = clickstream_repository.get_batch(first.id)
    assert released.status == "released" and released.released_at is not None
    session, _ = clickstream_repository.add_session("after", "q", ["a"])
    assert session.batch_id == release.next_batch_id
    assert [batch.id for batch in clickstream_repository.list_batches()] == [release.next_batch_id, first.id]
    with pytest.raises(UnknownBatchError, match="12345"):
        clickstream_repository.get_batch(12345)
    with pytest.raises(UnknownBatchError):
        clickstream_repository.get_batch_sessions(12345)


def test_batch_release_under_concurrent_inserts_loses_and_duplicates_nothing(
    clean_db: str, clickstream_repository: ClickstreamRepository
) -> None:
    writers, sessions_per_writer = 4, 60
    stop_releasing = threading.Event()
    releases = []
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            for number in range(sessions_per_writer):
                session_id = f"w{writer}-{number:03d}"
                if number % 3 == 0:
                    clickstream_repository.bulk_add([_record(session_id, clicks=[f"{session_id}-item-1"])])
                else:
                    clickstream_repository.add_session(session_id, "q", ["a", "b"])
        except BaseException as error:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(error)

    def release() -> None:
        while not stop_releasing.is_set():
            releases.append(clickstream_repository.release_batch())

    releaser = threading.Thread(target=release)
    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(writers)]
    releaser.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop_releasing.set()
    releaser.join()
    releases.append(clickstream_repository.release_batch())
    assert not errors

    total = writers * sessions_per_writer
    assert len(releases) > 2
    assert sum(release.session_count for release in releases) == total
    released_ids = [release.released_batch_id for release in releases]
    assert len(set(released_ids)) == len(released_ids)
    with clickstream_repository.database.connection() as connection:
        per_session = connection.execute("select count(*), count(distinct session_id) from clickstream_sessions")
        assert per_session.fetchone() == (total, total)
        collecting = connection.execute("select count(*) from clickstream_batches where status='collecting'")
        assert collecting.fetchone() == (1,)
    # Counts reported at release time are final: nothing slipped into a batch after it was released.
    for release in releases:
        assert clickstream_repository.count_batch_sessions(release.released_batch_id) == release.session_count
    streamed = Counter(
        session.session_id
        for batch_id in released_ids
        for session in clickstream_repository.get_batch_sessions(batch_id)
    )
    assert len(streamed) == total and set(streamed.values()) == {1}


def test_get_batch_sessions_pages_through_the_whole_batch_with_events(
    clean_db: str, clickstream_repository: ClickstreamRepository
) -> None:
    records = [_record(f"s{number:02d}", clicks=[f"s{number:02d}-item-{number % 5 + 1}"]) for number in range(23)]
    records.append(_record("no-clicks"))
    clickstream_repository.bulk_add(records)
    batch_id = clickstream_repository.release_batch().released_batch_id
    pages_seen = []
    original = clickstream_repository._fetch_events

    def counting_fetch(connection, session_ids):  # type: ignore[no-untyped-def]
        pages_seen.append(len(session_ids))
        return original(connection, session_ids)

    clickstream_repository._fetch_events = counting_fetch  # type: ignore[method-assign]
    try:
        sessions = list(clickstream_repository.get_batch_sessions(batch_id, page_size=5))
    finally:
        del clickstream_repository._fetch_events
    assert pages_seen == [5, 5, 5, 5, 4]
    assert [session.session_id for session in sessions] == sorted(record["session_id"] for record in records)
    by_id = {session.session_id: session for session in sessions}
    assert [event.item_id for event in by_id["s07"].events] == ["s07-item-3"]
    assert by_id["no-clicks"].events == []
    assert (
        list(clickstream_repository.get_batch_sessions(clickstream_repository.get_collecting_batch().id, page_size=2))
        == []
    )
