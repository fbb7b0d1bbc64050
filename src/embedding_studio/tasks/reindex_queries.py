"""Every SQL statement a reindex runs outside the vector store, by name (psycopg's ``%(name)s`` parameters).

The destination's advisory lock (``reindex.DestinationLock``) and the ``reindex_shards`` table of a sharded build
(migration 0010, ``shards.ShardTable``). The collections themselves are the vector store's (``vectordb.queries``).
"""

from __future__ import annotations

# ------------------------------------------------------------------------------------ the destination's lock

#: Session-level, so a killed worker's connection releases it.
TRY_ADVISORY_LOCK = "SELECT pg_try_advisory_lock(%(key)s)"
ADVISORY_UNLOCK = "SELECT pg_advisory_unlock(%(key)s)"

# ------------------------------------------------------------------------------------------ reindex_shards

#: The task's earlier builds (a retried task) and the builds of tasks no longer running.
DELETE_STALE_SHARDS = """
DELETE FROM reindex_shards
WHERE task_id = %(task_id)s OR task_id NOT IN (SELECT id FROM tasks WHERE status = 'processing')
"""

#: One shard of a new build (run with ``executemany``).
INSERT_SHARD = """
INSERT INTO reindex_shards (build_id, shard, task_id, owner, item_ids)
VALUES (%(build_id)s, %(shard)s, %(task_id)s, %(owner)s, %(item_ids)s)
"""

DELETE_BUILD_SHARDS = "DELETE FROM reindex_shards WHERE build_id = %(build_id)s"

#: A silent shard already tried ``attempts`` times fails instead of being claimed again.
FAIL_SILENT_LAST_TRIES = """
UPDATE reindex_shards SET status = 'failed', claim = NULL,
       error = 'its worker ' || coalesce(worker, '?') || ' went silent on the last of ' || attempts || ' tries'
WHERE build_id = %(build_id)s AND status = 'doing' AND attempts >= %(attempts)s
  AND heartbeat_at < now() - make_interval(secs => %(stale)s)
"""

#: The next shard nobody took, else one whose worker went silent. The pick is a materialized CTE: as a subquery
#: joined in ``UPDATE ... FROM`` PostgreSQL may rescan it per row and, skipping the row it just locked, claim
#: several shards in one statement.
CLAIM_SHARD = """
WITH pick AS MATERIALIZED (
    SELECT shard FROM reindex_shards
     WHERE build_id = %(build_id)s AND attempts < %(attempts)s
       AND (status = 'todo'
            OR (status = 'doing' AND heartbeat_at < now() - make_interval(secs => %(stale)s)))
     ORDER BY shard LIMIT 1 FOR UPDATE SKIP LOCKED
)
UPDATE reindex_shards s
   SET status = 'doing', worker = %(worker)s, claim = %(token)s, attempts = s.attempts + 1,
       heartbeat_at = now(), items_embedded = 0,
       error = CASE WHEN s.status = 'doing' THEN 'its worker ' || coalesce(s.worker, '?') ||
                    ' went silent; claimed again' ELSE s.error END
  FROM pick
 WHERE s.build_id = %(build_id)s AND s.shard = pick.shard
RETURNING s.shard, s.item_ids, s.attempts, s.error
"""

#: One row while the claim holds.
HEARTBEAT = """
UPDATE reindex_shards SET heartbeat_at = now(), items_embedded = %(items)s
WHERE build_id = %(build_id)s AND shard = %(shard)s AND claim = %(claim)s AND status = 'doing'
"""

#: Back for another try, or failed after its last one.
RELEASE_SHARD = """
UPDATE reindex_shards SET status = CASE WHEN attempts >= %(attempts)s THEN 'failed' ELSE 'todo' END,
       claim = NULL, error = %(error)s, items_embedded = 0
WHERE build_id = %(build_id)s AND shard = %(shard)s AND claim = %(claim)s
"""

#: Done, in the transaction that wrote the shard; one row while the claim holds.
MARK_SHARD_DONE = """
UPDATE reindex_shards SET status = 'done', claim = NULL, heartbeat_at = now(), items_embedded = %(items)s,
       parts = %(parts)s, skipped = %(skipped)s, seconds = %(seconds)s
WHERE build_id = %(build_id)s AND shard = %(shard)s AND claim = %(claim)s AND status = 'doing'
"""

SELECT_BUILD_SHARDS = """
SELECT shard, status, worker, attempts, items_embedded, parts, cardinality(skipped), error
FROM reindex_shards WHERE build_id = %(build_id)s ORDER BY shard
"""

BUILD_HAS_SHARDS = "SELECT 1 FROM reindex_shards WHERE build_id = %(build_id)s LIMIT 1"
