"""Collections of item vectors on pgvector, the blue pointer, and the item change log.

Every model that has been indexed owns one table (a *collection*) with one row per part of an item.
``deployment.blue_model_id`` says which collection search answers from; readers resolve it on each
request, so a flip is one committed transaction and no reader ever sees a half-built collection.

How nothing is lost while a collection is being built: every upsert or delete of items is written
into ``item_changes`` (in the same transaction as its writes into the collections that already serve,
blue and ready). A new collection records, under an exclusive lock on that log, the last sequence
number its source snapshot already contains (``change_seq_start``); it is bulk-loaded from the
snapshot, then replays every later change, and finally replays the remainder and flips while holding
the lock again, so a change either committed before that last step (and was replayed) or comes after
it (and sees the new collection as ready or blue, and writes into it directly).

Each collection keeps the ``ItemText`` it was built with, and every change is logged as the item itself
(a text or a JSON object), so each collection cuts an upserted item exactly as it cut its other items.
It keeps its ``ItemDisplay`` too, so an upserted item gets the same kind of display payload (title,
snippet, named fields; ``items.display``) as the items it was built with.
The same transaction records the item in ``upserted_items``: the catalog fine-tuning and a reindex from
the loader read, with these items on top.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from embedding_studio.items.display import ItemDisplay, display_payload
from embedding_studio.items.item_text import ItemText, ItemTextError, item_parts
from embedding_studio.vectordb.connection import DEFAULT_EF_SEARCH, get_pool
from embedding_studio.vectordb.errors import (
    CollectionNotFoundError,
    CollectionStateError,
    DimensionMismatchError,
    NoBlueModelError,
    RollbackUnavailableError,
)

logger = logging.getLogger(__name__)

MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search

#: Collections that serve (or may serve again by rollback) and therefore receive upserts directly.
MAINTAINED_STATES = ("blue", "ready")
#: How many parts are fetched per returned item, so items with several close parts still fill a page.
PART_OVERFETCH = 4
MIN_PARTS_FETCHED = 40

Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class ItemPart:
    item_id: str
    part: int
    content: str
    vector: np.ndarray
    payload: dict[str, Any] | None = None


@dataclass(frozen=True)
class SourcePart:
    """A stored part without its vector: what a reindex re-embeds."""

    item_id: str
    part: int
    content: str
    payload: dict[str, Any] | None


@dataclass(frozen=True)
class Collection:
    model_id: str
    table_name: str
    state: str
    item_count: int
    dim: int
    change_seq_start: int | None
    created_at: datetime
    updated_at: datetime
    #: how this collection's items became text parts (an upsert into it is cut the same way)
    item_text: ItemText = ItemText()
    #: what search shows of its items (an upsert into it gets the same kind of payload)
    item_display: ItemDisplay = ItemDisplay()


@dataclass(frozen=True)
class Deployment:
    blue_model_id: str | None
    previous_blue_model_id: str | None
    updated_at: datetime


@dataclass(frozen=True)
class EmbeddingModelRecord:
    id: str
    dim: int
    source: str
    model_uri: str | None
    created_at: datetime
    collection_state: str | None
    is_blue: bool
    is_previous_blue: bool
    item_count: int


@dataclass(frozen=True)
class BlueCollection:
    model_id: str
    table_name: str


@dataclass(frozen=True)
class SearchHit:
    item_id: str
    score: float
    payload: dict[str, Any] | None


@dataclass(frozen=True)
class ItemChange:
    """One upsert (``data``: the item, a text or a JSON object) or delete (``data`` None) of an item, as logged."""

    item_id: str
    operation: str  # "upsert" | "delete"
    data: str | dict[str, Any] | None = None
    payload: dict[str, Any] | None = None
    seq: int = 0


def collection_table_name(model_id: str) -> str:
    """A table name that is a valid identifier whatever the model id (a path, a run id, any text)."""
    return "collection_" + hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:24]


# ---------------------------------------------------------------------------------------------- models


def register_model(model_id: str, dim: int, source: str, model_uri: str | None = None) -> None:
    """Record a model the store may hold vectors of; registering again with another dim is an error."""
    with get_pool().connection() as connection:
        row = connection.execute(
            "INSERT INTO embedding_models (id, dim, source, model_uri) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET id = excluded.id RETURNING dim",
            (model_id, dim, source, model_uri),
        ).fetchone()
    assert row is not None
    if row[0] != dim:
        raise DimensionMismatchError(model_id, row[0], dim)


def get_model_record(model_id: str) -> EmbeddingModelRecord | None:
    for record in list_models(model_id=model_id):
        return record
    return None


def list_models(model_id: str | None = None) -> list[EmbeddingModelRecord]:
    """Every registered model with its collection's state; the blue one and the rollback target marked."""
    query = """
        SELECT m.id, m.dim, m.source, m.model_uri, m.created_at, c.state, c.item_count,
               d.blue_model_id = m.id AS is_blue, d.previous_blue_model_id = m.id AS is_previous_blue
          FROM embedding_models m
          LEFT JOIN collections c ON c.model_id = m.id
          CROSS JOIN deployment d
         WHERE (%(model_id)s::text IS NULL OR m.id = %(model_id)s::text)
         ORDER BY m.created_at, m.id
    """
    with get_pool().connection() as connection:
        rows = connection.execute(query, {"model_id": model_id}).fetchall()
    return [
        EmbeddingModelRecord(
            id=row[0],
            dim=row[1],
            source=row[2],
            model_uri=row[3],
            created_at=row[4],
            collection_state=row[5],
            item_count=row[6] or 0,
            is_blue=bool(row[7]),
            is_previous_blue=bool(row[8]),
        )
        for row in rows
    ]


# ----------------------------------------------------------------------------------------- collections


def _collection_from_row(row: dict[str, Any]) -> Collection:
    return Collection(
        model_id=row["model_id"],
        table_name=row["table_name"],
        state=row["state"],
        item_count=row["item_count"],
        dim=row["dim"],
        change_seq_start=row["change_seq_start"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        item_text=ItemText.from_options(row["item_text"]),
        item_display=ItemDisplay.from_options(row["item_display"]),
    )


_COLLECTION_SELECT = (
    "SELECT c.model_id, c.table_name, c.state, c.item_count, c.change_seq_start, c.created_at, c.updated_at, "
    "c.item_text, c.item_display, m.dim "
    "FROM collections c JOIN embedding_models m ON m.id = c.model_id"
)


def get_collection(model_id: str) -> Collection | None:
    with get_pool().connection() as connection, connection.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(_COLLECTION_SELECT + " WHERE c.model_id = %s", (model_id,)).fetchone()
    return _collection_from_row(row) if row else None


def list_collections(states: Sequence[str] | None = None) -> list[Collection]:
    with get_pool().connection() as connection, connection.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            _COLLECTION_SELECT + " WHERE (%(states)s::text[] IS NULL OR c.state = ANY(%(states)s::text[])) "
            "ORDER BY c.created_at",
            {"states": list(states) if states is not None else None},
        ).fetchall()
    return [_collection_from_row(row) for row in rows]


def start_collection(
    model_id: str, item_text: ItemText = ItemText(), item_display: ItemDisplay = ItemDisplay()
) -> Collection:
    """(Re)create the collection of a registered model, empty and ``building``, and note its snapshot point.

    ``item_text`` is how the build cuts items into parts, ``item_display`` what search shows of them; the
    collection keeps both for later upserts. The blue collection is never rebuilt in place: search reads it.
    """
    with get_pool().connection() as connection, connection.transaction():
        model = connection.execute("SELECT dim FROM embedding_models WHERE id = %s", (model_id,)).fetchone()
        if model is None:
            raise CollectionNotFoundError(model_id)
        dim = int(model[0])
        # Waits for upserts in flight, so every change up to the noted sequence number is in the snapshot.
        connection.execute("LOCK TABLE item_changes IN EXCLUSIVE MODE")
        existing = connection.execute(
            "SELECT state, table_name FROM collections WHERE model_id = %s FOR UPDATE", (model_id,)
        ).fetchone()
        if existing is not None and existing[0] == "blue":
            raise CollectionStateError(f"model {model_id!r} is the blue model: its collection cannot be rebuilt")
        table = collection_table_name(model_id)
        connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
        connection.execute(
            sql.SQL(
                "CREATE TABLE {} (item_id text NOT NULL, part integer NOT NULL, content text NOT NULL, "
                "vector vector({}) NOT NULL, payload jsonb, PRIMARY KEY (item_id, part))"
            ).format(sql.Identifier(table), sql.Literal(dim))
        )
        seq_row = connection.execute("SELECT coalesce(max(seq), 0) FROM item_changes").fetchone()
        assert seq_row is not None
        connection.execute(
            "INSERT INTO collections (model_id, table_name, state, item_count, change_seq_start, item_text, "
            "item_display) VALUES (%s, %s, 'building', 0, %s, %s, %s) "
            "ON CONFLICT (model_id) DO UPDATE SET table_name = excluded.table_name, state = 'building', "
            "item_count = 0, change_seq_start = excluded.change_seq_start, item_text = excluded.item_text, "
            "item_display = excluded.item_display, updated_at = now()",
            (model_id, table, seq_row[0], Jsonb(item_text.as_options()), Jsonb(item_display.as_options())),
        )
    collection = get_collection(model_id)
    assert collection is not None
    return collection


def copy_parts(
    table_name: str,
    parts: Iterable[ItemPart],
    replace_items: Sequence[str] = (),
    before_commit: Callable[[psycopg.Connection[Any]], None] | None = None,
) -> int:
    """Bulk-append parts with binary COPY (the collection must not hold them yet); returns the count.

    ``replace_items``: ids whose parts are deleted first, in the same transaction, so a slice of a sharded reindex
    written again (its first worker died) is idempotent per item. ``before_commit(connection)`` runs in that
    transaction after the COPY (a shard marks itself done there: written and done commit together, or neither).
    """
    count = 0
    with get_pool().connection() as connection, connection.transaction(), connection.cursor() as cursor:
        if replace_items:
            cursor.execute(
                sql.SQL("DELETE FROM {} WHERE item_id = ANY(%s)").format(sql.Identifier(table_name)),
                (list(replace_items),),
            )
        statement = sql.SQL("COPY {} (item_id, part, content, vector, payload) FROM STDIN WITH (FORMAT BINARY)").format(
            sql.Identifier(table_name)
        )
        with cursor.copy(statement) as copy:
            copy.set_types(["text", "int4", "text", "vector", "jsonb"])
            for part in parts:
                copy.write_row(
                    (
                        part.item_id,
                        part.part,
                        part.content,
                        np.asarray(part.vector, dtype=np.float32),
                        Jsonb(part.payload) if part.payload is not None else None,
                    )
                )
                count += 1
        if before_commit is not None:
            before_commit(connection)
    return count


def build_index(table_name: str) -> None:
    """Build the HNSW cosine index after the bulk load (much faster than maintaining it row by row).

    The graph of 100,000 384-dimensional vectors takes about 200 MB: with less `maintenance_work_mem` pgvector
    spills and the build slows several times. Parallel workers (PostgreSQL caps them at its own
    `max_parallel_workers`) make the build, the longest step of a GPU reindex, scale with the cores.
    """
    with get_pool().connection() as connection:
        connection.execute("SET maintenance_work_mem = '512MB'")
        connection.execute(
            sql.SQL("SET max_parallel_maintenance_workers = {}").format(
                sql.Literal(min(7, max(1, (os.cpu_count() or 2) - 1)))
            )
        )
        connection.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (vector vector_cosine_ops)").format(
                sql.Identifier(table_name + "_hnsw"), sql.Identifier(table_name)
            )
        )
        connection.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table_name)))
        connection.execute("RESET maintenance_work_mem")
        connection.execute("RESET max_parallel_maintenance_workers")


def count_source_parts(model_id: str) -> int:
    collection = get_collection(model_id)
    if collection is None:
        raise CollectionNotFoundError(model_id)
    with get_pool().connection() as connection:
        row = connection.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(collection.table_name)))
        result = row.fetchone()
    return int(result[0]) if result else 0


def iter_source_parts(model_id: str, batch_size: int = 512) -> Iterator[list[SourcePart]]:
    """Stream a collection's parts (content and payload) from one consistent snapshot, in batches."""
    collection = get_collection(model_id)
    if collection is None:
        raise CollectionNotFoundError(model_id)
    with get_pool().connection() as connection, connection.transaction():
        connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        with connection.cursor(name="source_parts") as cursor:
            cursor.itersize = batch_size
            cursor.execute(
                sql.SQL("SELECT item_id, part, content, payload FROM {} ORDER BY item_id, part").format(
                    sql.Identifier(collection.table_name)
                )
            )
            while True:
                rows = cursor.fetchmany(batch_size)
                if not rows:
                    break
                yield [SourcePart(item_id=row[0], part=row[1], content=row[2], payload=row[3]) for row in rows]


def source_item_ids(model_id: str) -> list[str]:
    """A collection's item ids, sorted: what a sharded reindex from it cuts into slices."""
    collection = get_collection(model_id)
    if collection is None:
        raise CollectionNotFoundError(model_id)
    with get_pool().connection() as connection:
        rows = connection.execute(
            sql.SQL("SELECT DISTINCT item_id FROM {} ORDER BY item_id").format(sql.Identifier(collection.table_name))
        ).fetchall()
    return [row[0] for row in rows]


def source_parts_of(table_name: str, item_ids: Sequence[str]) -> list[SourcePart]:
    """The parts (content and payload) of the given items of a collection's table, ordered by item and part."""
    with get_pool().connection() as connection:
        rows = connection.execute(
            sql.SQL(
                "SELECT item_id, part, content, payload FROM {} WHERE item_id = ANY(%s) ORDER BY item_id, part"
            ).format(sql.Identifier(table_name)),
            (list(item_ids),),
        ).fetchall()
    return [SourcePart(item_id=row[0], part=row[1], content=row[2], payload=row[3]) for row in rows]


def drop_collection(model_id: str) -> None:
    """Forget a collection that is not blue (a canceled or failed build); the model stays registered."""
    with get_pool().connection() as connection, connection.transaction():
        row = connection.execute(
            "SELECT state, table_name FROM collections WHERE model_id = %s FOR UPDATE", (model_id,)
        ).fetchone()
        if row is None:
            return
        state, table = row
        deployment = connection.execute(
            "SELECT blue_model_id, previous_blue_model_id FROM deployment WHERE id = 1"
        ).fetchone()
        if state == "blue" or (deployment is not None and model_id in deployment):
            raise CollectionStateError(f"model {model_id!r} is blue or its rollback target: its collection stays")
        connection.execute("DELETE FROM collections WHERE model_id = %s", (model_id,))
        connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


# --------------------------------------------------------------------------------------------- changes


def _latest_per_item(changes: Sequence[ItemChange]) -> list[ItemChange]:
    latest: dict[str, ItemChange] = {}
    for change in changes:
        latest[change.item_id] = change
    return list(latest.values())


def _embed_changes(changes: Sequence[ItemChange], embed: Embed, collection: Collection) -> list[ItemPart]:
    """The parts of every upserted item, cut with the collection's ``item_text`` and embedded by its model; each
    part carries the item's display payload under the collection's ``item_display``."""
    texts_by_change: list[tuple[ItemChange, list[str]]] = []
    for change in changes:
        if change.operation != "upsert":
            continue
        try:
            texts_by_change.append((change, item_parts(change.data, collection.item_text)))
        except ItemTextError as error:
            raise ItemTextError(
                f"item {change.item_id!r} cannot be embedded into the collection of {collection.model_id!r}: {error}"
            ) from None
    texts = [text for _, item_texts in texts_by_change for text in item_texts]
    if not texts:
        return []
    vectors = embed(texts)
    parts: list[ItemPart] = []
    offset = 0
    for change, item_texts in texts_by_change:
        payload = display_payload(change.data, collection.item_text, collection.item_display, change.payload)
        for index, text in enumerate(item_texts):
            parts.append(ItemPart(change.item_id, index, text, vectors[offset + index], payload))
        offset += len(item_texts)
    return parts


def _write_changes(
    cursor: psycopg.Cursor[Any], table_name: str, changes: Sequence[ItemChange], parts: list[ItemPart]
) -> None:
    """Replace every changed item's parts: delete all of them, then insert the new ones (upserts only)."""
    item_ids = [change.item_id for change in changes]
    cursor.execute(sql.SQL("DELETE FROM {} WHERE item_id = ANY(%s)").format(sql.Identifier(table_name)), (item_ids,))
    if parts:
        cursor.executemany(
            sql.SQL("INSERT INTO {} (item_id, part, content, vector, payload) VALUES (%s, %s, %s, %s, %s)").format(
                sql.Identifier(table_name)
            ),
            [
                (
                    part.item_id,
                    part.part,
                    part.content,
                    np.asarray(part.vector, dtype=np.float32),
                    Jsonb(part.payload) if part.payload is not None else None,
                )
                for part in parts
            ],
        )


def apply_item_changes(
    changes: Sequence[ItemChange], embedder_for: Callable[[str], Embed], attempts: int = 5
) -> list[str]:
    """Log upserts/deletes and write them into every serving collection in one transaction.

    ``embedder_for(model_id)`` gives the function that embeds texts with that collection's model. The
    vectors are computed before the transaction (it stays short); if a collection started serving in the
    meantime the whole thing is done again, so no serving collection misses a change. Returns the ids of
    the models whose collections were written.
    """
    for change in changes:
        if change.operation not in ("upsert", "delete"):
            raise ValueError(f"unknown item change {change.operation!r} for item {change.item_id!r}")
        if change.operation == "upsert" and change.data is None:
            raise ValueError(f"upsert of item {change.item_id!r} has no data")
    latest = _latest_per_item(changes)
    for _ in range(attempts):
        serving = {collection.model_id: collection for collection in list_collections(MAINTAINED_STATES)}
        parts_by_model = {
            model_id: _embed_changes(latest, embedder_for(model_id), collection)
            for model_id, collection in serving.items()
        }
        try:
            return _log_and_write(changes, latest, set(serving), parts_by_model)
        except _RetryChanges:
            continue
    raise CollectionStateError(f"collections kept changing while {len(changes)} item changes were applied; retry")


def _log_and_write(
    changes: Sequence[ItemChange],
    latest: list[ItemChange],
    serving: set[str],
    parts_by_model: dict[str, list[ItemPart]],
) -> list[str]:
    with get_pool().connection() as connection, connection.transaction(), connection.cursor() as cursor:
        # Logging first takes the log's row lock, which a collection's snapshot point waits for.
        cursor.executemany(
            "INSERT INTO item_changes (item_id, operation, data, payload) VALUES (%s, %s, %s, %s)",
            [
                (change.item_id, change.operation, _json(change.data), _json(change.payload or None))
                for change in changes
            ],
        )
        cursor.executemany(
            "INSERT INTO upserted_items (item_id, data, payload, deleted) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (item_id) DO UPDATE SET data = excluded.data, payload = excluded.payload, "
            "deleted = excluded.deleted, updated_at = now()",
            [
                (change.item_id, _json(change.data), _json(change.payload or None), change.operation == "delete")
                for change in latest
            ],
        )
        cursor.execute(
            "SELECT model_id, table_name FROM collections WHERE state = ANY(%s) FOR SHARE",
            (list(MAINTAINED_STATES),),
        )
        now_serving = {row[0]: row[1] for row in cursor.fetchall()}
        if set(now_serving) - serving:
            # A collection began to serve after the vectors were computed: the block rolls back, try again.
            raise _RetryChanges
        for model_id, table_name in now_serving.items():
            _write_changes(cursor, table_name, latest, parts_by_model[model_id])
    return sorted(now_serving)


class _RetryChanges(Exception):
    pass


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


@dataclass(frozen=True)
class UpsertedItem:
    """An item as last upserted (or deleted) through the API: part of the catalog, on top of the loader."""

    item_id: str
    data: str | dict[str, Any] | None
    payload: dict[str, Any] | None
    deleted: bool


def get_upserted_items(item_ids: Sequence[str] | None = None) -> dict[str, UpsertedItem]:
    """Upserted and deleted items by id: those of ``item_ids``, or all of them."""
    with get_pool().connection() as connection:
        rows = connection.execute(
            "SELECT item_id, data, payload, deleted FROM upserted_items "
            "WHERE %(ids)s::text[] IS NULL OR item_id = ANY(%(ids)s::text[]) ORDER BY item_id",
            {"ids": list(item_ids) if item_ids is not None else None},
        ).fetchall()
    return {row[0]: UpsertedItem(item_id=row[0], data=row[1], payload=row[2], deleted=row[3]) for row in rows}


def changes_after(seq: int, limit: int = 1000) -> list[ItemChange]:
    with get_pool().connection() as connection:
        rows = connection.execute(
            "SELECT seq, item_id, operation, data, payload FROM item_changes WHERE seq > %s ORDER BY seq LIMIT %s",
            (seq, limit),
        ).fetchall()
    return [ItemChange(seq=row[0], item_id=row[1], operation=row[2], data=row[3], payload=row[4]) for row in rows]


def catch_up(model_id: str, embed: Embed, after_seq: int, limit: int = 1000) -> int:
    """Replay logged changes newer than ``after_seq`` into a building collection; returns the last seq applied."""
    collection = get_collection(model_id)
    if collection is None:
        raise CollectionNotFoundError(model_id)
    while True:
        changes = changes_after(after_seq, limit)
        if not changes:
            return after_seq
        latest = _latest_per_item(changes)
        parts = _embed_changes(latest, embed, collection)
        with get_pool().connection() as connection, connection.transaction(), connection.cursor() as cursor:
            _write_changes(cursor, collection.table_name, latest, parts)
        after_seq = changes[-1].seq


def finish_collection(model_id: str, embed: Embed, after_seq: int, deploy_as_blue: bool) -> Collection:
    """Replay the last changes and mark the collection ready (and blue) in one locked transaction."""
    after_seq = catch_up(model_id, embed, after_seq)
    collection = get_collection(model_id)
    if collection is None:
        raise CollectionNotFoundError(model_id)
    with get_pool().connection() as connection, connection.transaction(), connection.cursor() as cursor:
        cursor.execute("LOCK TABLE item_changes IN EXCLUSIVE MODE")
        cursor.execute(
            "SELECT seq, item_id, operation, data, payload FROM item_changes WHERE seq > %s ORDER BY seq",
            (after_seq,),
        )
        remaining = [
            ItemChange(seq=row[0], item_id=row[1], operation=row[2], data=row[3], payload=row[4])
            for row in cursor.fetchall()
        ]
        if remaining:
            latest = _latest_per_item(remaining)
            _write_changes(cursor, collection.table_name, latest, _embed_changes(latest, embed, collection))
        cursor.execute(sql.SQL("SELECT count(DISTINCT item_id) FROM {}").format(sql.Identifier(collection.table_name)))
        count_row = cursor.fetchone()
        cursor.execute(
            "UPDATE collections SET state = 'ready', item_count = %s, change_seq_start = NULL, updated_at = now() "
            "WHERE model_id = %s AND state = 'building'",
            (count_row[0] if count_row else 0, model_id),
        )
        if cursor.rowcount != 1:
            raise CollectionStateError(f"the collection of model {model_id!r} is no longer being built")
        if deploy_as_blue:
            _flip(cursor, model_id)
        _prune_change_log(cursor)
    finished = get_collection(model_id)
    assert finished is not None
    return finished


def _prune_change_log(cursor: psycopg.Cursor[Any]) -> None:
    """Drop log entries no build still needs (every build replays only what came after its start)."""
    cursor.execute(
        "DELETE FROM item_changes WHERE seq <= coalesce("
        "(SELECT min(change_seq_start) FROM collections WHERE state = 'building'), "
        "(SELECT max(seq) FROM item_changes))"
    )


# ------------------------------------------------------------------------------------------ deployment


def get_deployment() -> Deployment:
    with get_pool().connection() as connection:
        row = connection.execute(
            "SELECT blue_model_id, previous_blue_model_id, updated_at FROM deployment WHERE id = 1"
        ).fetchone()
    if row is None:
        raise CollectionStateError("the deployment row is missing: run `embedding-studio db upgrade`")
    return Deployment(blue_model_id=row[0], previous_blue_model_id=row[1], updated_at=row[2])


def _flip(cursor: psycopg.Cursor[Any], model_id: str) -> str | None:
    """Make ``model_id`` blue inside the caller's transaction; the old blue stays ready for rollback."""
    cursor.execute("SELECT blue_model_id, previous_blue_model_id FROM deployment WHERE id = 1 FOR UPDATE")
    row = cursor.fetchone()
    if row is None:
        raise CollectionStateError("the deployment row is missing: run `embedding-studio db upgrade`")
    old_blue, old_previous = row
    if old_blue == model_id:
        return old_blue
    cursor.execute("SELECT state FROM collections WHERE model_id = %s FOR UPDATE", (model_id,))
    state_row = cursor.fetchone()
    if state_row is None:
        raise CollectionNotFoundError(model_id)
    if state_row[0] != "ready":
        raise CollectionStateError(f"model {model_id!r} cannot be deployed: its collection is {state_row[0]!r}")
    if old_previous is not None and old_previous not in (model_id, old_blue):
        # The rollback target moves on: the one before it stops receiving upserts, so its vectors go stale and it
        # can only serve again after a rebuild. Its table (vectors and HNSW index, ~350 MB per 100k items) goes
        # with this flip instead of piling up with every fine-tuning round; the row stays as its history.
        cursor.execute(
            "UPDATE collections SET state = 'retired', updated_at = now() WHERE model_id = %s AND state = 'ready' "
            "RETURNING table_name",
            (old_previous,),
        )
        retired = cursor.fetchone()
        if retired is not None:
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(retired[0])))
    if old_blue is not None:
        cursor.execute("UPDATE collections SET state = 'ready', updated_at = now() WHERE model_id = %s", (old_blue,))
    cursor.execute("UPDATE collections SET state = 'blue', updated_at = now() WHERE model_id = %s", (model_id,))
    cursor.execute(
        "UPDATE deployment SET blue_model_id = %s, previous_blue_model_id = %s, updated_at = now() WHERE id = 1",
        (model_id, old_blue),
    )
    logger.info("blue model is now %s (was %s)", model_id, old_blue)
    return old_blue


def deploy(model_id: str) -> Deployment:
    """Flip search over to a ready collection in one transaction."""
    with get_pool().connection() as connection, connection.transaction(), connection.cursor() as cursor:
        _flip(cursor, model_id)
    return get_deployment()


def rollback(from_model_id: str | None = None) -> Deployment:
    """Go back to the previous blue model; ``from_model_id``, when given, must be the current blue one."""
    with get_pool().connection() as connection, connection.transaction(), connection.cursor() as cursor:
        cursor.execute("SELECT blue_model_id, previous_blue_model_id FROM deployment WHERE id = 1 FOR UPDATE")
        row = cursor.fetchone()
        if row is None:
            raise CollectionStateError("the deployment row is missing: run `embedding-studio db upgrade`")
        blue, previous = row
        if from_model_id is not None and from_model_id != blue:
            raise RollbackUnavailableError(
                f"model {from_model_id!r} is not the blue model (the blue model is {blue!r}): only the blue model "
                "can be rolled back"
            )
        if previous is None:
            raise RollbackUnavailableError(
                f"there is no previous blue model to roll back to (blue is {blue!r})"
                if blue
                else "no model has been deployed yet"
            )
        cursor.execute("SELECT state FROM collections WHERE model_id = %s", (previous,))
        state_row = cursor.fetchone()
        if state_row is None or state_row[0] != "ready":
            state = state_row[0] if state_row else "missing"
            raise RollbackUnavailableError(
                f"the previous blue model {previous!r} cannot serve again: its collection is {state}"
            )
        _flip(cursor, previous)
    return get_deployment()


def get_blue_collection() -> BlueCollection | None:
    with get_pool().connection() as connection:
        row = connection.execute(
            "SELECT d.blue_model_id, c.table_name FROM deployment d "
            "JOIN collections c ON c.model_id = d.blue_model_id WHERE d.id = 1"
        ).fetchone()
    return BlueCollection(model_id=row[0], table_name=row[1]) if row else None


# ---------------------------------------------------------------------------------------------- search


_SEARCH_SQL = """
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


def search(
    query_vector: np.ndarray,
    limit: int = 10,
    offset: int = 0,
    collection: BlueCollection | None = None,
) -> list[SearchHit]:
    """Items nearest to the query by cosine similarity, an item scored by its best part.

    ``collection`` defaults to the blue one, resolved now; pass the one resolved earlier to search
    the same collection the query was encoded for.
    """
    if limit < 1 or offset < 0:
        raise ValueError(f"limit must be at least 1 and offset at least 0, got limit={limit}, offset={offset}")
    target = collection or get_blue_collection()
    if target is None:
        raise NoBlueModelError()
    parts = max((limit + offset) * PART_OVERFETCH, MIN_PARTS_FETCHED)
    statement = sql.SQL(_SEARCH_SQL).format(table=sql.Identifier(target.table_name))
    arguments = {
        "query": np.asarray(query_vector, dtype=np.float32),
        "parts": parts,
        "limit": limit,
        "offset": offset,
    }
    with get_pool().connection() as connection:
        if parts > DEFAULT_EF_SEARCH:
            with connection.transaction():
                # pgvector refuses ef_search above 1000: deeper pages are searched with the widest it allows.
                ef_search = min(parts, MAX_EF_SEARCH)
                connection.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(ef_search)))
                rows = connection.execute(statement, arguments).fetchall()
        else:
            rows = connection.execute(statement, arguments).fetchall()
    return [SearchHit(item_id=row[0], score=float(row[1]), payload=row[2]) for row in rows]
