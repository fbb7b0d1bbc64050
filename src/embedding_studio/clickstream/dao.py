"""The clickstream store: sessions, events and batches in PostgreSQL (tables of migration 0001).

Concurrency rule for batches: every insert of sessions takes the collecting batch row ``FOR SHARE``
for the length of its transaction; :meth:`ClickstreamRepository.release_batch` takes it ``FOR UPDATE``, so
it waits until every insert into the batch has committed, flips it to ``released`` and creates the
next collecting batch in the same transaction. An insert that was waiting on the row finds it
released, re-reads, and goes to the new batch. No session is lost or counted in two batches, and the
count a release reports is final.

Statements are the named SQL of ``clickstream.queries``, run with psycopg on the
:class:`~embedding_studio.db.Database` the repository is handed (no ORM): the write path is hot, and the bulk
path sends a whole request as one ``jsonb_to_recordset`` statement per table. The API awaits the hot inserts
on the database's asyncio pool when it has one open (``Database.open_async_pool``, the app's lifespan).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from pydantic import ValidationError

from embedding_studio.clickstream import queries
from embedding_studio.clickstream.errors import (
    EventConflictError,
    InvalidRecordError,
    ItemNotInResultsError,
    SessionConflictError,
    UnknownBatchError,
    UnknownSessionError,
)
from embedding_studio.clickstream.records import (
    EventRecord,
    SessionBody,
    SessionRecord,
    describe_repeated_events,
    describe_validation_error,
    distinct_events,
    event_differences,
    guess_session_id,
    parse_session_record,
)
from embedding_studio.clickstream.types import (
    BatchStats,
    BulkResult,
    ClickstreamBatch,
    ClickstreamEvent,
    ClickstreamSession,
    RejectedRecord,
    ReleaseResult,
)
from embedding_studio.config import get_settings
from embedding_studio.db import Database
from embedding_studio.db.pool import run_idempotent, run_idempotent_async

__all__ = [
    "ClickstreamRepository",
    "EventConflictError",
    "InvalidRecordError",
    "ItemNotInResultsError",
    "SessionConflictError",
    "UnknownBatchError",
    "UnknownSessionError",
]

_RETRYABLE_ERRORS = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure, pg_errors.UniqueViolation)
_MAX_ATTEMPTS = 5


def _session_parameters(body: SessionBody) -> dict[str, Any]:
    return {
        "session_id": body.session_id,
        "query": json.dumps(body.query),
        "results": body.results,
        "user_id": body.user_id,
        "is_irrelevant": False,
        "created_at": body.created_at,
        "payload": _json_or_none(body.payload),
        "rank_offset": body.rank_offset,
    }


def _event_records(events: Iterable[EventRecord | Mapping[str, Any]]) -> list[EventRecord]:
    """Validated events with exact repeats dropped; an id sent twice with different bodies is refused."""
    try:
        records = [event if isinstance(event, EventRecord) else EventRecord.model_validate(event) for event in events]
    except ValidationError as error:
        raise InvalidRecordError(describe_validation_error(error)) from error
    records, conflicts = distinct_events(records)
    if conflicts:
        raise InvalidRecordError(describe_repeated_events(conflicts))
    return records


def _events_parameters(session_id: str, records: list[EventRecord]) -> dict[str, Any]:
    return {"id": session_id, "rows": json.dumps([_event_row_json(session_id, record) for record in records])}


def _events_inserted(session_id: str, records: list[EventRecord], answer: tuple[Any, ...] | None) -> int | None:
    """The insert's answer read back: how many events were new, why none was stored, or None when some
    ids were stored already and nothing was written (the bodies must be compared first)."""
    results, inserted, stored = answer or (None, None, None)
    if results is None:
        raise UnknownSessionError(session_id)
    if inserted is None:
        shown = set(results)
        missing = list(dict.fromkeys(record.item_id for record in records if record.item_id not in shown))
        raise ItemNotInResultsError(session_id, missing)
    if stored:
        return None
    return int(inserted)


def _stored_event_differences(stored: ClickstreamEvent, event: EventRecord) -> list[str]:
    return event_differences(stored.item_id, stored.event_type, stored.created_at, stored.payload, event)


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _differences(stored: ClickstreamSession, body: SessionBody) -> list[str]:
    """Fields in which a resent body disagrees with the stored session (empty: the same session).

    ``created_at`` counts only when the client sent one: a body without it is stamped by the server,
    and resending it must still be recognised as the same session.
    """
    differences = []
    if stored.query != body.query:
        differences.append("query")
    if stored.results != body.results:
        differences.append("results")
    if stored.rank_offset != body.rank_offset:
        differences.append("rank_offset")
    if stored.user_id != body.user_id:
        differences.append("user_id")
    if (stored.payload or None) != (body.payload or None):
        differences.append("payload")
    if body.created_at is not None and stored.created_at != body.created_at:
        differences.append("created_at")
    return differences


Connection = psycopg.Connection[Any]


class ClickstreamRepository:
    """Every read and write of the clickstream tables goes through here, on the database it is handed."""

    def __init__(self, database: Database) -> None:
        self._database = database

    @property
    def database(self) -> Database:
        return self._database

    def _autocommit_fetchone(self, statement: str, parameters: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """One statement in its own transaction on an unchecked pooled connection: the hot single-statement writes.

        One round trip and no check of the connection first (see `embedding_studio.db.pool`); the statements sent
        here are idempotent, so a dead connection costs one retry.
        """
        return run_idempotent(
            self._database.pool("clickstream"),
            lambda connection: connection.execute(statement, parameters).fetchone(),
        )

    async def _autocommit_fetchone_async(self, statement: str, parameters: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """`_autocommit_fetchone` awaited on the database's asyncio pool (open: see the callers)."""
        pool = self._database.async_pool
        assert pool is not None

        async def work(connection: psycopg.AsyncConnection[Any]) -> tuple[Any, ...] | None:
            cursor = await connection.execute(statement, parameters)
            return await cursor.fetchone()

        return await run_idempotent_async(pool, work)

    # ----------------------------------------------------------------------------------------- writes

    def add_session(
        self,
        session_id: str,
        query: str | dict[str, Any],
        results: list[str],
        user_id: str | None = None,
        created_at: datetime | None = None,
        payload: dict[str, Any] | None = None,
        rank_offset: int = 0,
    ) -> tuple[ClickstreamSession, bool]:
        """Store one search session in the collecting batch (``rank_offset``: results ranked above the first shown).

        Returns the stored session and whether it was created now; the same body again is not stored
        twice (``created=False``), the same id with a different body raises :class:`SessionConflictError`.
        """
        fields = {
            "session_id": session_id,
            "query": query,
            "results": results,
            "user_id": user_id,
            "created_at": created_at,
            "payload": payload,
            "rank_offset": rank_offset,
        }
        try:
            body = SessionBody.model_validate(fields)
        except ValidationError as error:
            raise InvalidRecordError(describe_validation_error(error)) from error
        return self.store_session(body)

    def store_session(self, body: SessionBody) -> tuple[ClickstreamSession, bool]:
        """:meth:`add_session` for a body that was validated already (the API's), so it is not checked twice."""
        parameters = _session_parameters(body)
        row = self._autocommit_fetchone(queries.INSERT_SESSION_INTO_COLLECTING_BATCH, parameters)
        if row is not None:
            return ClickstreamSession.from_row(row), True
        return self._store_session_carefully(body, parameters)

    async def store_session_async(self, body: SessionBody) -> tuple[ClickstreamSession, bool]:
        """:meth:`store_session` awaiting the insert on the event loop (the API's hot path); on a thread when the
        database has no asyncio pool open."""
        if self._database.async_pool is None:
            return await asyncio.to_thread(self.store_session, body)
        parameters = _session_parameters(body)
        row = await self._autocommit_fetchone_async(queries.INSERT_SESSION_INTO_COLLECTING_BATCH, parameters)
        if row is not None:
            return ClickstreamSession.from_row(row), True
        return await asyncio.to_thread(self._store_session_carefully, body, parameters)

    def _store_session_carefully(
        self, body: SessionBody, parameters: dict[str, Any]
    ) -> tuple[ClickstreamSession, bool]:
        # Either the id is taken or a release committed while we waited on the batch row: take the careful path.
        with self._database.transaction() as connection:
            parameters["batch_id"] = self._lock_collecting_batch(connection)
            row = connection.execute(queries.INSERT_SESSION, parameters).fetchone()
            if row is not None:
                return ClickstreamSession.from_row(row), True
            stored = self._fetch_sessions(connection, [body.session_id])[0]
        differences = _differences(stored, body)
        if differences:
            raise SessionConflictError(body.session_id, differences)
        return stored, False

    def add_events(self, session_id: str, events: Iterable[EventRecord | Mapping[str, Any]]) -> int:
        """Attach events to a stored session; returns how many were new.

        Event ids are unique within their session. An id stored before with the same body is a repeat
        (not stored twice, not counted); with a different body the whole request is refused with
        :class:`EventConflictError` and nothing of it is stored.
        """
        records = _event_records(events)
        if not records:
            if not self._session_exists(session_id):
                raise UnknownSessionError(session_id)
            return 0
        # A retry after a commit whose answer was lost finds those events stored with the same body: repeats.
        try:
            answer = self._autocommit_fetchone(
                queries.INSERT_NEW_EVENTS_IF_ALL_SHOWN, _events_parameters(session_id, records)
            )
        except pg_errors.UniqueViolation:
            return self._add_events_carefully(session_id, records)
        inserted = _events_inserted(session_id, records, answer)
        return self._add_events_carefully(session_id, records) if inserted is None else inserted

    async def add_events_async(self, session_id: str, events: Iterable[EventRecord | Mapping[str, Any]]) -> int:
        """:meth:`add_events` awaiting the insert on the event loop (the API's hot path); on a thread when the
        database has no asyncio pool open."""
        if self._database.async_pool is None:
            return await asyncio.to_thread(self.add_events, session_id, events)
        records = _event_records(events)
        if not records:
            return await asyncio.to_thread(self.add_events, session_id, records)
        parameters = _events_parameters(session_id, records)
        try:
            answer = await self._autocommit_fetchone_async(queries.INSERT_NEW_EVENTS_IF_ALL_SHOWN, parameters)
        except pg_errors.UniqueViolation:
            return await asyncio.to_thread(self._add_events_carefully, session_id, records)
        inserted = _events_inserted(session_id, records, answer)
        if inserted is None:
            return await asyncio.to_thread(self._add_events_carefully, session_id, records)
        return inserted

    def _add_events_carefully(self, session_id: str, records: list[EventRecord]) -> int:
        """Some of the request's ids are stored already: compare their bodies, then insert the rest.

        Off the hot path (resends, retries, clients that report a session's clicks cumulatively). Each
        insert is again all or nothing over the ids still missing, so an id a concurrent request stores
        in between sends this round once more, to be compared like the others.
        """
        pending = records
        for _ in range(_MAX_ATTEMPTS):
            with self._database.connection() as connection:
                rows = connection.execute(
                    queries.SELECT_SESSION_EVENTS_BY_ID,
                    {"id": session_id, "event_ids": [record.event_id for record in pending]},
                ).fetchall()
            stored = {row[0]: ClickstreamEvent.from_row(row) for row in rows}
            conflicts = {
                record.event_id: differences
                for record in pending
                if record.event_id in stored
                and (differences := _stored_event_differences(stored[record.event_id], record))
            }
            if conflicts:
                raise EventConflictError(session_id, conflicts)
            pending = [record for record in pending if record.event_id not in stored]
            if not pending:
                return 0
            try:
                answer = self._autocommit_fetchone(
                    queries.INSERT_NEW_EVENTS_IF_ALL_SHOWN, _events_parameters(session_id, pending)
                )
            except pg_errors.UniqueViolation:
                continue
            inserted = _events_inserted(session_id, pending, answer)
            if inserted is not None:
                return inserted
        raise RuntimeError(
            f"events of session {session_id!r} kept colliding with concurrent writes of the same event ids "
            f"after {_MAX_ATTEMPTS} attempts; nothing of this request was stored, send it again"
        )

    def _session_exists(self, session_id: str) -> bool:
        with self._database.connection() as connection:
            return connection.execute(queries.SESSION_EXISTS, {"id": session_id}).fetchone() is not None

    def mark_irrelevant(self, session_id: str) -> ClickstreamSession:
        """Flag a session whose results the user found useless (fine-tuning treats them as negatives)."""
        with self._database.transaction() as connection:
            row = connection.execute(queries.MARK_SESSION_IRRELEVANT, {"id": session_id}).fetchone()
        if row is None:
            raise UnknownSessionError(session_id)
        return ClickstreamSession.from_row(row)

    def bulk_add(self, records: Iterable[object]) -> BulkResult:
        """Store many sessions with their events in one transaction.

        Each record is judged on its own: an invalid record or a conflicting id is rejected with its
        reason and index, and never keeps the good records out.
        """
        result = BulkResult()
        first_records: dict[str, tuple[int, SessionRecord]] = {}
        repeats: list[tuple[int, SessionRecord]] = []
        for index, raw in enumerate(records):
            try:
                record = parse_session_record(raw)
            except InvalidRecordError as error:
                result.rejected.append(RejectedRecord(index, guess_session_id(raw), str(error)))
                continue
            if record.session_id in first_records:
                # Judged against what ends up stored, like a resend in a later request.
                repeats.append((index, record))
            else:
                first_records[record.session_id] = (index, record)
        if first_records:
            self._bulk_insert(list(first_records.values()), repeats, result)
        result.rejected.sort(key=lambda rejected: rejected.index)
        return result

    def _bulk_insert(
        self, records: list[tuple[int, SessionRecord]], repeats: list[tuple[int, SessionRecord]], result: BulkResult
    ) -> None:
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            partial = BulkResult()
            try:
                with self._database.transaction() as connection:
                    self._bulk_insert_in(connection, records, repeats, partial)
            except _RETRYABLE_ERRORS:
                if attempt < _MAX_ATTEMPTS:
                    time.sleep(0.01 * attempt)
                    continue
                raise
            result.merge(partial)
            return

    def _bulk_insert_in(
        self,
        connection: Connection,
        records: list[tuple[int, SessionRecord]],
        repeats: list[tuple[int, SessionRecord]],
        result: BulkResult,
    ) -> None:
        batch_id = self._lock_collecting_batch(connection)
        rows = [_session_row_json(record) for _, record in records]
        inserted_ids = {
            row[0]
            for row in connection.execute(
                queries.BULK_INSERT_SESSIONS, {"batch_id": batch_id, "rows": json.dumps(rows)}
            )
        }
        result.inserted += len(inserted_ids)
        to_compare = [(index, record) for index, record in records if record.session_id not in inserted_ids]
        to_compare += repeats
        rejected_indexes: set[int] = set()
        duplicate_indexes: list[int] = []
        if to_compare:
            stored_ids = list({record.session_id for _, record in to_compare})
            stored_by_id = {stored.session_id: stored for stored in self._fetch_sessions(connection, stored_ids)}
            for index, record in to_compare:
                differences = _differences(stored_by_id[record.session_id], record)
                if differences:
                    rejected_indexes.add(index)
                    reason = str(SessionConflictError(record.session_id, differences))
                    result.rejected.append(RejectedRecord(index, record.session_id, reason))
                else:
                    duplicate_indexes.append(index)
        accepted = sorted(
            ((index, record) for index, record in [*records, *repeats] if index not in rejected_indexes),
            key=lambda pair: pair[0],
        )
        events = self._new_events(connection, accepted, rejected_indexes, result)
        result.duplicates += sum(1 for index in duplicate_indexes if index not in rejected_indexes)
        if events:
            result.events_inserted += self._insert_events(connection, events)

    @staticmethod
    def _new_events(
        connection: Connection,
        accepted: list[tuple[int, SessionRecord]],
        rejected_indexes: set[int],
        result: BulkResult,
    ) -> list[tuple[str, EventRecord]]:
        """The events of the accepted records not stored yet; a record naming a stored event id (or one an
        earlier record of the request names) with a different body is rejected whole, with the ids."""
        keys = {(record.session_id, event.event_id) for _, record in accepted for event in record.events}
        stored: dict[tuple[str, str], ClickstreamEvent] = {}
        if keys:
            session_ids, event_ids = zip(*keys, strict=True)
            rows = connection.execute(
                queries.SELECT_EVENTS_BY_KEY, {"session_ids": list(session_ids), "event_ids": list(event_ids)}
            ).fetchall()
            stored = {(row[1], row[0]): ClickstreamEvent.from_row(row) for row in rows}
        taken: dict[tuple[str, str], EventRecord] = {}
        new_events: list[tuple[str, EventRecord]] = []
        for index, record in accepted:
            conflicts: dict[str, list[str]] = {}
            fresh: list[tuple[tuple[str, str], EventRecord]] = []
            for event in record.events:
                key = (record.session_id, event.event_id)
                if key in stored:
                    differences = _stored_event_differences(stored[key], event)
                elif key in taken:
                    earlier = taken[key]
                    differences = event_differences(
                        earlier.item_id, earlier.event_type, earlier.created_at, earlier.payload, event
                    )
                else:
                    fresh.append((key, event))
                    continue
                if differences:
                    conflicts[event.event_id] = differences
            if conflicts:
                rejected_indexes.add(index)
                reason = str(EventConflictError(record.session_id, conflicts))
                result.rejected.append(RejectedRecord(index, record.session_id, reason))
                continue
            for key, event in fresh:
                taken[key] = event
                new_events.append((record.session_id, event))
        return new_events

    def release_batch(self) -> ReleaseResult:
        """Close the collecting batch for fine-tuning and open the next one, atomically."""
        with self._database.transaction() as connection:
            batch_id = self._lock_collecting_batch(connection, queries.LOCK_COLLECTING_BATCH_FOR_UPDATE)
            connection.execute(queries.RELEASE_BATCH, {"id": batch_id})
            next_id = _single_value(connection.execute(queries.INSERT_COLLECTING_BATCH).fetchone())
            # Every insert into the batch held the row FOR SHARE and has committed by now, so this
            # statement's snapshot sees the final content of the batch.
            count = _single_value(connection.execute(queries.COUNT_BATCH_SESSIONS, {"id": batch_id}).fetchone())
        return ReleaseResult(released_batch_id=batch_id, session_count=count, next_batch_id=next_id)

    # ------------------------------------------------------------------------------------------ reads

    def get_batch(self, batch_id: int) -> ClickstreamBatch:
        with self._database.connection() as connection:
            row = connection.execute(queries.SELECT_BATCH, {"id": batch_id}).fetchone()
        if row is None:
            raise UnknownBatchError(batch_id)
        return ClickstreamBatch.from_row(row)

    def get_collecting_batch(self) -> ClickstreamBatch:
        with self._database.connection() as connection:
            row = connection.execute(queries.SELECT_COLLECTING_BATCH).fetchone()
        if row is None:
            raise RuntimeError("no collecting clickstream batch: run `embedding-studio db upgrade`")
        return ClickstreamBatch.from_row(row)

    def list_batches(self) -> list[ClickstreamBatch]:
        """All batches, newest first, with their session counts."""
        with self._database.connection() as connection:
            rows = connection.execute(queries.SELECT_BATCHES_NEWEST_FIRST).fetchall()
        return [ClickstreamBatch.from_row(row) for row in rows]

    def get_batch_stats(self, batch_id: int) -> BatchStats:
        batch = self.get_batch(batch_id)
        with self._database.connection() as connection:
            row = connection.execute(queries.BATCH_EVENT_STATS, {"id": batch_id}).fetchone()
            sessions = connection.execute(queries.BATCH_SESSION_STATS, {"id": batch_id}).fetchone()
        assert row is not None and sessions is not None  # aggregates answer one row
        irrelevant, users = sessions
        return BatchStats(
            batch_id=batch.id,
            status=batch.status,
            session_count=batch.session_count,
            event_count=row[0],
            click_count=row[1],
            sessions_with_clicks=row[2],
            irrelevant_count=irrelevant,
            user_count=users,
        )

    def count_batch_sessions(self, batch_id: int) -> int:
        return self.get_batch(batch_id).session_count

    def get_session(self, session_id: str) -> ClickstreamSession:
        with self._database.connection() as connection:
            sessions = self._fetch_sessions(connection, [session_id])
            if not sessions:
                raise UnknownSessionError(session_id)
            events = self._fetch_events(connection, [session_id])
        return dataclasses.replace(sessions[0], events=events.get(session_id, []))

    def get_batch_sessions(self, batch_id: int, page_size: int | None = None) -> Iterator[ClickstreamSession]:
        """Stream a batch's sessions (ordered by session id) with their events, one page at a time.

        Pages are read by keyset (``session_id > last``) on the ``(batch_id, session_id)`` index, each in
        its own short query, so neither memory nor an open transaction grows with the batch, and a
        consumer that takes hours between pages holds no connection.
        """
        size = page_size or get_settings().clickstream_page_size
        if size < 1:
            raise ValueError(f"page_size must be at least 1, got {size}")
        self.get_batch(batch_id)  # fail now, not on the first next(), for an unknown batch
        return self._iterate_batch_sessions(batch_id, size)

    def _iterate_batch_sessions(self, batch_id: int, page_size: int) -> Iterator[ClickstreamSession]:
        last_session_id: str | None = None
        while True:
            with self._database.connection() as connection:
                page = (
                    queries.SELECT_BATCH_SESSIONS_FIRST_PAGE
                    if last_session_id is None
                    else queries.SELECT_BATCH_SESSIONS_PAGE_AFTER
                )
                rows = connection.execute(
                    page, {"batch_id": batch_id, "after": last_session_id, "limit": page_size}
                ).fetchall()
                if not rows:
                    return
                events = self._fetch_events(connection, [row[0] for row in rows])
            for row in rows:
                yield ClickstreamSession.from_row(row, events.get(row[0], []))
            if len(rows) < page_size:
                return
            last_session_id = rows[-1][0]

    # ---------------------------------------------------------------------------------------- helpers

    @staticmethod
    def _lock_collecting_batch(connection: Connection, lock: str = queries.LOCK_COLLECTING_BATCH_FOR_SHARE) -> int:
        """The id of the collecting batch, locked until the transaction ends (inserts share, a release updates)."""
        for _ in range(100):
            row = connection.execute(lock).fetchone()
            if row is not None:
                return int(row[0])
            # A release committed while we waited on its row lock: the next statement sees the new batch.
            continue
        raise RuntimeError("no collecting clickstream batch: run `embedding-studio db upgrade`")

    @staticmethod
    def _fetch_sessions(connection: Connection, session_ids: list[str]) -> list[ClickstreamSession]:
        rows = connection.execute(queries.SELECT_SESSIONS_BY_ID, {"ids": session_ids}).fetchall()
        return [ClickstreamSession.from_row(row) for row in rows]

    @staticmethod
    def _fetch_events(connection: Connection, session_ids: list[str]) -> dict[str, list[ClickstreamEvent]]:
        rows = connection.execute(queries.SELECT_EVENTS_OF_SESSIONS, {"ids": session_ids}).fetchall()
        events: dict[str, list[ClickstreamEvent]] = {}
        for row in rows:
            event = ClickstreamEvent.from_row(row)
            events.setdefault(event.session_id, []).append(event)
        return events

    @staticmethod
    def _insert_events(connection: Connection, events: list[tuple[str, EventRecord]]) -> int:
        rows = [_event_row_json(session_id, event) for session_id, event in events]
        return connection.execute(queries.BULK_INSERT_EVENTS, {"rows": json.dumps(rows)}).rowcount


def _session_row_json(record: SessionRecord) -> dict[str, Any]:
    row: dict[str, Any] = {
        "session_id": record.session_id,
        "query": record.query,
        "results": record.results,
        "is_irrelevant": record.is_irrelevant,
        "rank_offset": record.rank_offset,
    }
    if record.user_id is not None:
        row["user_id"] = record.user_id
    if record.created_at is not None:
        row["created_at"] = record.created_at.isoformat()
    if record.payload is not None:
        row["payload"] = record.payload
    return row


def _event_row_json(session_id: str, event: EventRecord) -> dict[str, Any]:
    row: dict[str, Any] = {
        "event_id": event.event_id,
        "session_id": session_id,
        "item_id": event.item_id,
        "event_type": event.event_type,
    }
    if event.created_at is not None:
        row["created_at"] = event.created_at.isoformat()
    if event.payload is not None:
        row["payload"] = event.payload
    return row


def _single_value(row: tuple[Any, ...] | None) -> Any:
    """The one value a one-row statement answers (``RETURNING id``, ``count(*)``)."""
    assert row is not None
    return row[0]
