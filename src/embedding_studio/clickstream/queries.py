"""Every SQL statement on the clickstream tables, by name (psycopg's ``%(name)s`` parameters).

``ClickstreamRepository`` (``clickstream.dao``) runs these and nothing else. Statements that answer sessions or
events return ``SESSION_COLUMNS`` / ``EVENT_COLUMNS``, the columns ``ClickstreamSession.from_row`` and
``ClickstreamEvent.from_row`` read.
"""

from __future__ import annotations

SESSION_COLUMNS = "session_id, batch_id, query, results, user_id, is_irrelevant, created_at, payload, rank_offset"
EVENT_COLUMNS = "event_id, session_id, item_id, event_type, created_at, payload"

INSERT_SESSION = f"""
INSERT INTO clickstream_sessions ({SESSION_COLUMNS})
VALUES (%(session_id)s, %(batch_id)s, %(query)s::jsonb, %(results)s, %(user_id)s, %(is_irrelevant)s,
        coalesce(%(created_at)s, now()), %(payload)s::jsonb, %(rank_offset)s)
ON CONFLICT (session_id) DO NOTHING
RETURNING {SESSION_COLUMNS}
"""

# One statement, one implicit transaction: the batch row is held FOR SHARE until the insert commits,
# which is all the release protocol needs. No row back means "id taken" or "batch just released".
INSERT_SESSION_INTO_COLLECTING_BATCH = f"""
WITH batch AS (SELECT id FROM clickstream_batches WHERE status = 'collecting' FOR SHARE)
INSERT INTO clickstream_sessions ({SESSION_COLUMNS})
SELECT %(session_id)s, batch.id, %(query)s::jsonb, %(results)s, %(user_id)s, %(is_irrelevant)s,
       coalesce(%(created_at)s, now()), %(payload)s::jsonb, %(rank_offset)s
FROM batch
ON CONFLICT (session_id) DO NOTHING
RETURNING {SESSION_COLUMNS}
"""

# Events go in only when every one of them is on a shown result and none of their ids is stored in the
# session yet (all or nothing), in one round trip. Answers (results, inserted, stored): results NULL =
# unknown session; inserted NULL = some item was not shown; stored > 0 = some ids are taken, nothing was
# written, and the caller compares bodies (`ClickstreamRepository._add_events_carefully`). There is no ON
# CONFLICT: an id stored by a concurrent request after this statement's snapshot fails it with a unique
# violation, which rolls the whole statement back, rather than dropping that event without a word.
INSERT_NEW_EVENTS_IF_ALL_SHOWN = f"""
WITH incoming AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
        event_id text, session_id text, item_id text, event_type text, created_at timestamptz, payload jsonb)
), shown AS (
    SELECT results FROM clickstream_sessions WHERE session_id = %(id)s
), verdict AS (
    SELECT EXISTS (SELECT 1 FROM shown)
           AND NOT EXISTS (SELECT 1 FROM incoming i, shown s WHERE NOT (i.item_id = ANY (s.results)))
           AS all_shown,
           (SELECT count(*) FROM clickstream_events e
            WHERE e.session_id = %(id)s AND e.event_id IN (SELECT event_id FROM incoming)) AS stored
), inserted AS (
    INSERT INTO clickstream_events ({EVENT_COLUMNS})
    SELECT i.event_id, %(id)s, i.item_id, coalesce(i.event_type, 'click'), coalesce(i.created_at, now()), i.payload
    FROM incoming i, verdict WHERE verdict.all_shown AND verdict.stored = 0
    ORDER BY i.event_id
    RETURNING 1
)
SELECT (SELECT results FROM shown),
       CASE WHEN (SELECT all_shown FROM verdict) THEN (SELECT count(*) FROM inserted) END,
       (SELECT stored FROM verdict)
"""

SELECT_SESSION_EVENTS_BY_ID = f"""
SELECT {EVENT_COLUMNS} FROM clickstream_events WHERE session_id = %(id)s AND event_id = ANY(%(event_ids)s)
"""

SELECT_EVENTS_BY_KEY = f"""
SELECT {EVENT_COLUMNS} FROM clickstream_events
WHERE (session_id, event_id) IN (SELECT * FROM unnest(%(session_ids)s::text[], %(event_ids)s::text[]))
"""

# Sorted by key so two concurrent bulk requests that share ids take the index locks in the same
# order and cannot deadlock each other. Events are inserted only after their stored namesakes were
# compared, so they carry no ON CONFLICT: a namesake committed meanwhile fails the transaction with a
# unique violation, and the retry compares it.
BULK_INSERT_SESSIONS = f"""
INSERT INTO clickstream_sessions ({SESSION_COLUMNS})
SELECT r.session_id, %(batch_id)s, r.query, r.results, r.user_id, coalesce(r.is_irrelevant, false),
       coalesce(r.created_at, now()), r.payload, coalesce(r.rank_offset, 0)
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
    session_id text, query jsonb, results text[], user_id text, is_irrelevant boolean,
    created_at timestamptz, payload jsonb, rank_offset integer)
ORDER BY r.session_id
ON CONFLICT (session_id) DO NOTHING
RETURNING session_id
"""

BULK_INSERT_EVENTS = f"""
INSERT INTO clickstream_events ({EVENT_COLUMNS})
SELECT r.event_id, r.session_id, r.item_id, coalesce(r.event_type, 'click'), coalesce(r.created_at, now()), r.payload
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
    event_id text, session_id text, item_id text, event_type text, created_at timestamptz, payload jsonb)
ORDER BY r.session_id, r.event_id
"""

SELECT_SESSIONS_BY_ID = f"SELECT {SESSION_COLUMNS} FROM clickstream_sessions WHERE session_id = ANY(%(ids)s)"

BATCH_WITH_COUNT = """
SELECT b.id, b.status, b.created_at, b.released_at,
       (SELECT count(*) FROM clickstream_sessions s WHERE s.batch_id = b.id) AS session_count
FROM clickstream_batches b
"""

SELECT_BATCH = BATCH_WITH_COUNT + " WHERE b.id = %(id)s"
SELECT_COLLECTING_BATCH = BATCH_WITH_COUNT + " WHERE b.status = 'collecting'"
SELECT_BATCHES_NEWEST_FIRST = BATCH_WITH_COUNT + " ORDER BY b.id DESC"

#: The collecting batch's id, its row locked until the transaction ends: inserts share it, a release updates it.
LOCK_COLLECTING_BATCH_FOR_SHARE = "SELECT id FROM clickstream_batches WHERE status = 'collecting' FOR SHARE"
LOCK_COLLECTING_BATCH_FOR_UPDATE = "SELECT id FROM clickstream_batches WHERE status = 'collecting' FOR UPDATE"

RELEASE_BATCH = "UPDATE clickstream_batches SET status = 'released', released_at = now() WHERE id = %(id)s"
INSERT_COLLECTING_BATCH = "INSERT INTO clickstream_batches (status) VALUES ('collecting') RETURNING id"
COUNT_BATCH_SESSIONS = "SELECT count(*) FROM clickstream_sessions WHERE batch_id = %(id)s"

SESSION_EXISTS = "SELECT 1 FROM clickstream_sessions WHERE session_id = %(id)s"

MARK_SESSION_IRRELEVANT = f"""
UPDATE clickstream_sessions SET is_irrelevant = true WHERE session_id = %(id)s
RETURNING {SESSION_COLUMNS}
"""

#: Events, clicks and sessions with a click in one batch.
BATCH_EVENT_STATS = """
SELECT count(e.event_id), count(e.event_id) FILTER (WHERE e.event_type = 'click'),
       count(DISTINCT e.session_id) FILTER (WHERE e.event_type = 'click')
FROM clickstream_events e JOIN clickstream_sessions s ON s.session_id = e.session_id
WHERE s.batch_id = %(id)s
"""

BATCH_SESSION_STATS = """
SELECT count(*) FILTER (WHERE is_irrelevant), count(DISTINCT user_id)
FROM clickstream_sessions WHERE batch_id = %(id)s
"""

# A batch's sessions by keyset pages: two statements rather than "after IS NULL OR ...", so the index range scan
# on (batch_id, session_id) starts at the cursor.
SELECT_BATCH_SESSIONS_FIRST_PAGE = f"""
SELECT {SESSION_COLUMNS} FROM clickstream_sessions WHERE batch_id = %(batch_id)s
ORDER BY session_id LIMIT %(limit)s
"""

SELECT_BATCH_SESSIONS_PAGE_AFTER = f"""
SELECT {SESSION_COLUMNS} FROM clickstream_sessions WHERE batch_id = %(batch_id)s AND session_id > %(after)s
ORDER BY session_id LIMIT %(limit)s
"""

SELECT_EVENTS_OF_SESSIONS = f"""
SELECT {EVENT_COLUMNS} FROM clickstream_events WHERE session_id = ANY(%(ids)s)
ORDER BY session_id, created_at, event_id
"""
