"""Every SQL statement of the vector store, by name (psycopg's ``%(name)s`` parameters).

``VectorStore`` runs these and nothing else, so the store's SQL can be read in one place. Statements on the
shared tables (``embedding_models``, ``collections``, ``deployment``, ``item_changes``) are plain strings.
Statements on one collection's own table are ``psycopg.sql`` templates whose ``{table}`` (and index name) is
filled with :func:`on_table`, i.e. ``sql.Identifier``: a table name is never formatted into the text, and values
always travel as parameters. A statement that answers rows of a type returns the columns its ``from_row`` reads
(``vectordb.types``).
"""

from __future__ import annotations

from psycopg import sql

# ------------------------------------------------------------------------------------------------ columns

COLLECTION_COLUMNS = (
    "c.model_id, c.table_name, c.state, c.item_count, c.change_seq_start, c.created_at, c.updated_at, "
    "c.item_text, c.item_display, m.dim"
)
DEPLOYMENT_COLUMNS = "blue_model_id, previous_blue_model_id, updated_at"
CHANGE_COLUMNS = "seq, item_id, operation, data, payload"
SOURCE_PART_COLUMNS = "item_id, part, content, payload"

# ------------------------------------------------------------------------------------------------- models

#: Answers the dim the model was registered with first (a second registration keeps it).
REGISTER_MODEL = """
INSERT INTO embedding_models (id, dim, source, model_uri) VALUES (%(id)s, %(dim)s, %(source)s, %(model_uri)s)
ON CONFLICT (id) DO UPDATE SET id = excluded.id
RETURNING dim
"""

#: Every registered model (``model_id`` NULL) or one, with its collection's state and the deployment's marks.
SELECT_MODELS = """
SELECT m.id, m.dim, m.source, m.model_uri, m.created_at, c.state, c.item_count,
       d.blue_model_id = m.id AS is_blue, d.previous_blue_model_id = m.id AS is_previous_blue
  FROM embedding_models m
  LEFT JOIN collections c ON c.model_id = m.id
  CROSS JOIN deployment d
 WHERE (%(model_id)s::text IS NULL OR m.id = %(model_id)s::text)
 ORDER BY m.created_at, m.id
"""

SELECT_MODEL_DIM = "SELECT dim FROM embedding_models WHERE id = %(model_id)s"

# -------------------------------------------------------------------------------------------- collections

_COLLECTIONS = f"SELECT {COLLECTION_COLUMNS} FROM collections c JOIN embedding_models m ON m.id = c.model_id"

SELECT_COLLECTION = _COLLECTIONS + " WHERE c.model_id = %(model_id)s"

#: ``states`` NULL: every collection.
SELECT_COLLECTIONS = (
    _COLLECTIONS + " WHERE (%(states)s::text[] IS NULL OR c.state = ANY(%(states)s::text[])) ORDER BY c.created_at"
)

#: The collection's row locked until the transaction ends (a rebuild or a drop of it waits).
LOCK_COLLECTION = "SELECT state, table_name FROM collections WHERE model_id = %(model_id)s FOR UPDATE"

#: A new or rebuilt collection: empty, ``building``, its snapshot point noted.
UPSERT_BUILDING_COLLECTION = """
INSERT INTO collections (model_id, table_name, state, item_count, change_seq_start, item_text, item_display)
VALUES (%(model_id)s, %(table_name)s, 'building', 0, %(change_seq_start)s, %(item_text)s, %(item_display)s)
ON CONFLICT (model_id) DO UPDATE SET table_name = excluded.table_name, state = 'building', item_count = 0,
       change_seq_start = excluded.change_seq_start, item_text = excluded.item_text,
       item_display = excluded.item_display, updated_at = now()
"""

#: One row when the collection was still being built.
MARK_COLLECTION_READY = """
UPDATE collections SET state = 'ready', item_count = %(item_count)s, change_seq_start = NULL, updated_at = now()
WHERE model_id = %(model_id)s AND state = 'building'
"""

DELETE_COLLECTION = "DELETE FROM collections WHERE model_id = %(model_id)s"

#: The collections that receive upserts (``states``: ``MAINTAINED_STATES``), held until the transaction ends.
SHARE_MAINTAINED_COLLECTIONS = "SELECT model_id, table_name FROM collections WHERE state = ANY(%(states)s) FOR SHARE"

# ------------------------------------------------------------------------------------------- change log

#: Waits for the upserts in flight and keeps new ones out until the transaction ends.
LOCK_CHANGE_LOG = "LOCK TABLE item_changes IN EXCLUSIVE MODE"

LAST_CHANGE_SEQ = "SELECT coalesce(max(seq), 0) FROM item_changes"

#: One change (run with ``executemany``).
LOG_CHANGE = """
INSERT INTO item_changes (item_id, operation, data, payload) VALUES (%(item_id)s, %(operation)s, %(data)s, %(payload)s)
"""

SELECT_CHANGES_AFTER = f"SELECT {CHANGE_COLUMNS} FROM item_changes WHERE seq > %(seq)s ORDER BY seq LIMIT %(limit)s"

SELECT_ALL_CHANGES_AFTER = f"SELECT {CHANGE_COLUMNS} FROM item_changes WHERE seq > %(seq)s ORDER BY seq"

#: Drops the entries no build still needs (every build replays only what came after its start).
PRUNE_CHANGE_LOG = """
DELETE FROM item_changes WHERE seq <= coalesce(
    (SELECT min(change_seq_start) FROM collections WHERE state = 'building'),
    (SELECT max(seq) FROM item_changes))
"""

# ------------------------------------------------------------------------------------------- deployment

SELECT_DEPLOYMENT = f"SELECT {DEPLOYMENT_COLUMNS} FROM deployment WHERE id = 1"

#: The blue pointer and the rollback target, locked until the transaction ends (one flip at a time).
LOCK_DEPLOYMENT = "SELECT blue_model_id, previous_blue_model_id FROM deployment WHERE id = 1 FOR UPDATE"

#: Without a lock: what a drop checks against (a flip takes the collection's row first).
SELECT_DEPLOYED_MODELS = "SELECT blue_model_id, previous_blue_model_id FROM deployment WHERE id = 1"

LOCK_COLLECTION_STATE = "SELECT state, table_name FROM collections WHERE model_id = %(model_id)s FOR UPDATE"
SELECT_COLLECTION_STATE = "SELECT state FROM collections WHERE model_id = %(model_id)s"

#: The rollback target that moves on; answers its table (to drop) when it was ready.
RETIRE_COLLECTION = """
UPDATE collections SET state = 'retired', updated_at = now() WHERE model_id = %(model_id)s AND state = 'ready'
RETURNING table_name
"""

SET_COLLECTION_STATE = "UPDATE collections SET state = %(state)s, updated_at = now() WHERE model_id = %(model_id)s"

SET_BLUE = """
UPDATE deployment SET blue_model_id = %(blue)s, previous_blue_model_id = %(previous)s, updated_at = now()
WHERE id = 1
"""

SELECT_BLUE_COLLECTION = """
SELECT d.blue_model_id, c.table_name FROM deployment d JOIN collections c ON c.model_id = d.blue_model_id
WHERE d.id = 1
"""

# -------------------------------------------------------------------------------------- index and search

#: Set once per pooled connection (``vectordb.connection``): what a first page of search needs.
SET_EF_SEARCH = sql.SQL("SET hnsw.ef_search = {ef_search}")
#: For one transaction: a deeper page searches wider.
SET_LOCAL_EF_SEARCH = sql.SQL("SET LOCAL hnsw.ef_search = {ef_search}")

SET_MAINTENANCE_WORK_MEM = "SET maintenance_work_mem = '512MB'"
SET_PARALLEL_MAINTENANCE_WORKERS = sql.SQL("SET max_parallel_maintenance_workers = {workers}")
RESET_MAINTENANCE_WORK_MEM = "RESET maintenance_work_mem"
RESET_PARALLEL_MAINTENANCE_WORKERS = "RESET max_parallel_maintenance_workers"

#: The first statement of a transaction that streams a collection from one consistent snapshot.
SNAPSHOT_READ_ONLY = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"

# ----------------------------------------------------------------------------- a collection's own table

CREATE_COLLECTION_TABLE = sql.SQL(
    "CREATE TABLE {table} (item_id text NOT NULL, part integer NOT NULL, content text NOT NULL, "
    "vector vector({dim}) NOT NULL, payload jsonb, PRIMARY KEY (item_id, part))"
)

DROP_COLLECTION_TABLE = sql.SQL("DROP TABLE IF EXISTS {table}")

DELETE_ITEMS = sql.SQL("DELETE FROM {table} WHERE item_id = ANY(%(item_ids)s)")

COPY_PARTS = sql.SQL("COPY {table} (item_id, part, content, vector, payload) FROM STDIN WITH (FORMAT BINARY)")
#: The types of ``COPY_PARTS``'s columns, for ``Copy.set_types``.
COPY_PARTS_TYPES = ["text", "int4", "text", "vector", "jsonb"]

#: One part (run with ``executemany``).
INSERT_PART = sql.SQL(
    "INSERT INTO {table} (item_id, part, content, vector, payload) "
    "VALUES (%(item_id)s, %(part)s, %(content)s, %(vector)s, %(payload)s)"
)

CREATE_HNSW_INDEX = sql.SQL("CREATE INDEX IF NOT EXISTS {index} ON {table} USING hnsw (vector vector_cosine_ops)")
ANALYZE_TABLE = sql.SQL("ANALYZE {table}")

COUNT_PARTS = sql.SQL("SELECT count(*) FROM {table}")
COUNT_ITEMS = sql.SQL("SELECT count(DISTINCT item_id) FROM {table}")
HAS_PARTS = sql.SQL("SELECT EXISTS (SELECT 1 FROM {table})")
SELECT_ITEM_IDS = sql.SQL("SELECT DISTINCT item_id FROM {table} ORDER BY item_id")
SELECT_PARTS = sql.SQL(f"SELECT {SOURCE_PART_COLUMNS} FROM {{table}} ORDER BY item_id, part")
SELECT_PARTS_OF_ITEMS = sql.SQL(
    f"SELECT {SOURCE_PART_COLUMNS} FROM {{table}} WHERE item_id = ANY(%(item_ids)s) ORDER BY item_id, part"
)

#: Whether any part's payload has the key (an image collection's parts carry ``image_url``).
ANY_PAYLOAD_WITH_KEY = sql.SQL("SELECT 1 FROM {table} WHERE payload ? %(key)s LIMIT 1")

#: The items nearest to ``query`` by cosine similarity, each scored by its best of the ``parts`` nearest parts.
SEARCH = sql.SQL(
    """
WITH nearest AS (
    SELECT item_id, payload, vector <=> %(query)s AS distance
      FROM {table}
     ORDER BY vector <=> %(query)s
     LIMIT %(parts)s
), best AS (
    SELECT DISTINCT ON (item_id) item_id, payload, distance
      FROM nearest
     ORDER BY item_id, distance
)
SELECT item_id, 1 - distance AS score, payload
  FROM best
 ORDER BY distance, item_id
 LIMIT %(limit)s OFFSET %(offset)s
"""
)


def on_table(statement: sql.SQL, table_name: str, **literals: object) -> sql.Composed:
    """``statement`` on one collection's table: ``{table}`` as an identifier (``{index}`` too, named after it),
    the other placeholders as literals (a vector's dimension, a setting's value: DDL takes no parameters)."""
    return statement.format(
        table=sql.Identifier(table_name),
        index=sql.Identifier(table_name + "_hnsw"),
        **{name: sql.Literal(value) for name, value in literals.items()},
    )


def with_literals(statement: sql.SQL, **literals: object) -> sql.Composed:
    """``statement`` with its placeholders filled as literals (``SET`` takes no parameters)."""
    return statement.format(**{name: sql.Literal(value) for name, value in literals.items()})
