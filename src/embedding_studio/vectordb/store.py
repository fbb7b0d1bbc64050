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

:class:`VectorStore` is handed the :class:`~embedding_studio.db.Database` it runs on (its ``"vectordb"`` pool,
``vectordb.connection``) and sends only the statements of ``vectordb.queries``; rows become the frozen types of
``vectordb.types`` through their ``from_row``. Every caller is handed its store by its process's wiring (the API
lifespan, a CLI command, the worker's start-up); nothing here reaches for a default database.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from embedding_studio.db import Database
from embedding_studio.items.display import ItemDisplay, display_payload
from embedding_studio.items.item_text import ItemText, ItemTextError, item_parts
from embedding_studio.items.upserted_items import UpsertedItem, UpsertedItems
from embedding_studio.vectordb import queries
from embedding_studio.vectordb.connection import DEFAULT_EF_SEARCH, vectordb_pool
from embedding_studio.vectordb.errors import (
    CollectionNotFoundError,
    CollectionStateError,
    DimensionMismatchError,
    EmptyCollectionError,
    NoBlueModelError,
    RollbackUnavailableError,
)
from embedding_studio.vectordb.types import (
    BlueCollection,
    Collection,
    Deployment,
    EmbeddingModelRecord,
    ItemChange,
    ItemPart,
    SearchHit,
    SourcePart,
)

logger = logging.getLogger(__name__)

MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search

#: Collections that serve (or may serve again by rollback) and therefore receive upserts directly.
MAINTAINED_STATES = ("blue", "ready")
#: How many parts are fetched per returned item, so items with several close parts still fill a page.
PART_OVERFETCH = 4
MIN_PARTS_FETCHED = 40

_MISSING_DEPLOYMENT = "the deployment row is missing: run `embedding-studio db upgrade`"

Embed = Callable[[list[str]], np.ndarray]
Connection = psycopg.Connection[Any]
Cursor = psycopg.Cursor[Any]


def collection_table_name(model_id: str) -> str:
    """A table name that is a valid identifier whatever the model id (a path, a run id, any text)."""
    return "collection_" + hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:24]


class VectorStore:
    """Every read and write of the vector store's tables, on the database it is handed."""

    def __init__(self, database: Database) -> None:
        self._database = database

    @property
    def database(self) -> Database:
        return self._database

    @property
    def upserted_items(self) -> UpsertedItems:
        """The items upserted through the API (their table is written by :meth:`apply_item_changes`)."""
        return UpsertedItems(self._database)

    def _connection(self) -> AbstractContextManager[Connection]:
        """A connection of the database's ``"vectordb"`` pool (autocommit; a write block opens a transaction)."""
        return vectordb_pool(self._database).connection()

    def _collection_or_raise(self, model_id: str) -> Collection:
        collection = self.get_collection(model_id)
        if collection is None:
            raise CollectionNotFoundError(model_id)
        return collection

    # ------------------------------------------------------------------------------------------ models

    def register_model(self, model_id: str, dim: int, source: str, model_uri: str | None = None) -> None:
        """Record a model the store may hold vectors of; registering again with another dim is an error."""
        with self._connection() as connection:
            row = connection.execute(
                queries.REGISTER_MODEL, {"id": model_id, "dim": dim, "source": source, "model_uri": model_uri}
            ).fetchone()
        assert row is not None
        if row[0] != dim:
            raise DimensionMismatchError(model_id, row[0], dim)

    def get_model_record(self, model_id: str) -> EmbeddingModelRecord | None:
        for record in self.list_models(model_id=model_id):
            return record
        return None

    def list_models(self, model_id: str | None = None) -> list[EmbeddingModelRecord]:
        """Every registered model with its collection's state; the blue one and the rollback target marked."""
        with self._connection() as connection:
            rows = connection.execute(queries.SELECT_MODELS, {"model_id": model_id}).fetchall()
        return [EmbeddingModelRecord.from_row(row) for row in rows]

    # ------------------------------------------------------------------------------------- collections

    def get_collection(self, model_id: str) -> Collection | None:
        with self._connection() as connection:
            row = connection.execute(queries.SELECT_COLLECTION, {"model_id": model_id}).fetchone()
        return Collection.from_row(row) if row else None

    def list_collections(self, states: Sequence[str] | None = None) -> list[Collection]:
        with self._connection() as connection:
            rows = connection.execute(
                queries.SELECT_COLLECTIONS, {"states": list(states) if states is not None else None}
            ).fetchall()
        return [Collection.from_row(row) for row in rows]

    def start_collection(
        self, model_id: str, item_text: ItemText = ItemText(), item_display: ItemDisplay = ItemDisplay()
    ) -> Collection:
        """(Re)create the collection of a registered model, empty and ``building``, and note its snapshot point.

        ``item_text`` is how the build cuts items into parts, ``item_display`` what search shows of them; the
        collection keeps both for later upserts. The blue collection is never rebuilt in place: search reads it.
        """
        with self._connection() as connection, connection.transaction():
            model = connection.execute(queries.SELECT_MODEL_DIM, {"model_id": model_id}).fetchone()
            if model is None:
                raise CollectionNotFoundError(model_id)
            dim = int(model[0])
            # Waits for upserts in flight, so every change up to the noted sequence number is in the snapshot.
            connection.execute(queries.LOCK_CHANGE_LOG)
            existing = connection.execute(queries.LOCK_COLLECTION, {"model_id": model_id}).fetchone()
            if existing is not None and existing[0] == "blue":
                raise CollectionStateError(f"model {model_id!r} is the blue model: its collection cannot be rebuilt")
            table = collection_table_name(model_id)
            connection.execute(queries.on_table(queries.DROP_COLLECTION_TABLE, table))
            connection.execute(queries.on_table(queries.CREATE_COLLECTION_TABLE, table, dim=dim))
            seq_row = connection.execute(queries.LAST_CHANGE_SEQ).fetchone()
            assert seq_row is not None
            connection.execute(
                queries.UPSERT_BUILDING_COLLECTION,
                {
                    "model_id": model_id,
                    "table_name": table,
                    "change_seq_start": seq_row[0],
                    "item_text": Jsonb(item_text.as_options()),
                    "item_display": Jsonb(item_display.as_options()),
                },
            )
        collection = self.get_collection(model_id)
        assert collection is not None
        return collection

    def copy_parts(
        self,
        table_name: str,
        parts: Iterable[ItemPart],
        replace_items: Sequence[str] = (),
        before_commit: Callable[[Connection], None] | None = None,
    ) -> int:
        """Bulk-append parts with binary COPY (the collection must not hold them yet); returns the count.

        ``replace_items``: ids whose parts are deleted first, in the same transaction, so a slice of a sharded
        reindex written again (its first worker died) is idempotent per item. ``before_commit(connection)`` runs in
        that transaction after the COPY (a shard marks itself done there: written and done commit together, or
        neither).
        """
        count = 0
        with self._connection() as connection, connection.transaction(), connection.cursor() as cursor:
            if replace_items:
                cursor.execute(queries.on_table(queries.DELETE_ITEMS, table_name), {"item_ids": list(replace_items)})
            with cursor.copy(queries.on_table(queries.COPY_PARTS, table_name)) as copy:
                copy.set_types(queries.COPY_PARTS_TYPES)
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

    def build_index(self, table_name: str) -> None:
        """Build the HNSW cosine index after the bulk load (much faster than maintaining it row by row).

        The graph of 100,000 384-dimensional vectors takes about 200 MB: with less `maintenance_work_mem` pgvector
        spills and the build slows several times. Parallel workers (PostgreSQL caps them at its own
        `max_parallel_workers`) make the build, the longest step of a GPU reindex, scale with the cores.
        """
        workers = min(7, max(1, (os.cpu_count() or 2) - 1))
        with self._connection() as connection:
            connection.execute(queries.SET_MAINTENANCE_WORK_MEM)
            connection.execute(queries.with_literals(queries.SET_PARALLEL_MAINTENANCE_WORKERS, workers=workers))
            connection.execute(queries.on_table(queries.CREATE_HNSW_INDEX, table_name))
            connection.execute(queries.on_table(queries.ANALYZE_TABLE, table_name))
            connection.execute(queries.RESET_MAINTENANCE_WORK_MEM)
            connection.execute(queries.RESET_PARALLEL_MAINTENANCE_WORKERS)

    def count_source_parts(self, model_id: str) -> int:
        collection = self._collection_or_raise(model_id)
        with self._connection() as connection:
            row = connection.execute(queries.on_table(queries.COUNT_PARTS, collection.table_name)).fetchone()
        return int(row[0]) if row else 0

    def iter_source_parts(self, model_id: str, batch_size: int = 512) -> Iterator[list[SourcePart]]:
        """Stream a collection's parts (content and payload) from one consistent snapshot, in batches."""
        collection = self._collection_or_raise(model_id)
        with self._connection() as connection, connection.transaction():
            connection.execute(queries.SNAPSHOT_READ_ONLY)
            with connection.cursor(name="source_parts") as cursor:
                cursor.itersize = batch_size
                cursor.execute(queries.on_table(queries.SELECT_PARTS, collection.table_name))
                while True:
                    rows = cursor.fetchmany(batch_size)
                    if not rows:
                        break
                    yield [SourcePart.from_row(row) for row in rows]

    def source_item_ids(self, model_id: str) -> list[str]:
        """A collection's item ids, sorted: what a sharded reindex from it cuts into slices."""
        collection = self._collection_or_raise(model_id)
        with self._connection() as connection:
            rows = connection.execute(queries.on_table(queries.SELECT_ITEM_IDS, collection.table_name)).fetchall()
        return [row[0] for row in rows]

    def source_parts_of(self, table_name: str, item_ids: Sequence[str]) -> list[SourcePart]:
        """The parts (content and payload) of the given items of a collection's table, ordered by item and part."""
        with self._connection() as connection:
            rows = connection.execute(
                queries.on_table(queries.SELECT_PARTS_OF_ITEMS, table_name), {"item_ids": list(item_ids)}
            ).fetchall()
        return [SourcePart.from_row(row) for row in rows]

    def any_payload_with_key(self, table_name: str, key: str) -> bool:
        """Whether some part of a collection's table has ``key`` in its payload (read from one row)."""
        with self._connection() as connection:
            row = connection.execute(queries.on_table(queries.ANY_PAYLOAD_WITH_KEY, table_name), {"key": key})
            return row.fetchone() is not None

    def drop_collection(self, model_id: str) -> None:
        """Forget a collection that is not blue (a canceled or failed build); the model stays registered."""
        with self._connection() as connection, connection.transaction():
            row = connection.execute(queries.LOCK_COLLECTION, {"model_id": model_id}).fetchone()
            if row is None:
                return
            state, table = row
            deployment = connection.execute(queries.SELECT_DEPLOYED_MODELS).fetchone()
            if state == "blue" or (deployment is not None and model_id in deployment):
                raise CollectionStateError(f"model {model_id!r} is blue or its rollback target: its collection stays")
            connection.execute(queries.DELETE_COLLECTION, {"model_id": model_id})
            connection.execute(queries.on_table(queries.DROP_COLLECTION_TABLE, table))

    # ----------------------------------------------------------------------------------------- changes

    def apply_item_changes(
        self, changes: Sequence[ItemChange], embedder_for: Callable[[str], Embed], attempts: int = 5
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
            serving = {collection.model_id: collection for collection in self.list_collections(MAINTAINED_STATES)}
            parts_by_model = {
                model_id: _embed_changes(latest, embedder_for(model_id), collection)
                for model_id, collection in serving.items()
            }
            try:
                return self._log_and_write(changes, latest, set(serving), parts_by_model)
            except _RetryChanges:
                continue
        raise CollectionStateError(f"collections kept changing while {len(changes)} item changes were applied; retry")

    def _log_and_write(
        self,
        changes: Sequence[ItemChange],
        latest: list[ItemChange],
        serving: set[str],
        parts_by_model: dict[str, list[ItemPart]],
    ) -> list[str]:
        with self._connection() as connection, connection.transaction(), connection.cursor() as cursor:
            # Logging first takes the log's row lock, which a collection's snapshot point waits for.
            cursor.executemany(
                queries.LOG_CHANGE,
                [
                    {
                        "item_id": change.item_id,
                        "operation": change.operation,
                        "data": _json(change.data),
                        "payload": _json(change.payload or None),
                    }
                    for change in changes
                ],
            )
            UpsertedItems.record(
                cursor,
                [
                    UpsertedItem(change.item_id, change.data, change.payload, change.operation == "delete")
                    for change in latest
                ],
            )
            cursor.execute(queries.SHARE_MAINTAINED_COLLECTIONS, {"states": list(MAINTAINED_STATES)})
            now_serving = {row[0]: row[1] for row in cursor.fetchall()}
            if set(now_serving) - serving:
                # A collection began to serve after the vectors were computed: the block rolls back, try again.
                raise _RetryChanges
            for model_id, table_name in now_serving.items():
                _write_changes(cursor, table_name, latest, parts_by_model[model_id])
        return sorted(now_serving)

    def get_upserted_items(self, item_ids: Sequence[str] | None = None) -> dict[str, UpsertedItem]:
        """Upserted and deleted items by id: those of ``item_ids``, or all of them."""
        return self.upserted_items.get(item_ids)

    def changes_after(self, seq: int, limit: int = 1000) -> list[ItemChange]:
        with self._connection() as connection:
            rows = connection.execute(queries.SELECT_CHANGES_AFTER, {"seq": seq, "limit": limit}).fetchall()
        return [ItemChange.from_row(row) for row in rows]

    def catch_up(self, model_id: str, embed: Embed, after_seq: int, limit: int = 1000) -> int:
        """Replay logged changes newer than ``after_seq`` into a building collection; returns the last seq applied."""
        collection = self._collection_or_raise(model_id)
        while True:
            changes = self.changes_after(after_seq, limit)
            if not changes:
                return after_seq
            latest = _latest_per_item(changes)
            parts = _embed_changes(latest, embed, collection)
            with self._connection() as connection, connection.transaction(), connection.cursor() as cursor:
                _write_changes(cursor, collection.table_name, latest, parts)
            after_seq = changes[-1].seq

    def finish_collection(self, model_id: str, embed: Embed, after_seq: int, deploy_as_blue: bool) -> Collection:
        """Replay the last changes and mark the collection ready (and blue) in one locked transaction."""
        after_seq = self.catch_up(model_id, embed, after_seq)
        collection = self._collection_or_raise(model_id)
        with self._connection() as connection, connection.transaction(), connection.cursor() as cursor:
            cursor.execute(queries.LOCK_CHANGE_LOG)
            cursor.execute(queries.SELECT_ALL_CHANGES_AFTER, {"seq": after_seq})
            remaining = [ItemChange.from_row(row) for row in cursor.fetchall()]
            if remaining:
                latest = _latest_per_item(remaining)
                _write_changes(cursor, collection.table_name, latest, _embed_changes(latest, embed, collection))
            cursor.execute(queries.on_table(queries.COUNT_ITEMS, collection.table_name))
            count_row = cursor.fetchone()
            cursor.execute(
                queries.MARK_COLLECTION_READY,
                {"item_count": count_row[0] if count_row else 0, "model_id": model_id},
            )
            if cursor.rowcount != 1:
                raise CollectionStateError(f"the collection of model {model_id!r} is no longer being built")
            if deploy_as_blue:
                _flip(cursor, model_id)
            cursor.execute(queries.PRUNE_CHANGE_LOG)
        finished = self.get_collection(model_id)
        assert finished is not None
        return finished

    # -------------------------------------------------------------------------------------- deployment

    def get_deployment(self) -> Deployment:
        with self._connection() as connection:
            row = connection.execute(queries.SELECT_DEPLOYMENT).fetchone()
        if row is None:
            raise CollectionStateError(_MISSING_DEPLOYMENT)
        return Deployment.from_row(row)

    def deploy(self, model_id: str) -> Deployment:
        """Flip search over to a ready collection in one transaction."""
        with self._connection() as connection, connection.transaction(), connection.cursor() as cursor:
            _flip(cursor, model_id)
        return self.get_deployment()

    def rollback(self, from_model_id: str | None = None) -> Deployment:
        """Go back to the previous blue model; ``from_model_id``, when given, must be the current blue one."""
        with self._connection() as connection, connection.transaction(), connection.cursor() as cursor:
            cursor.execute(queries.LOCK_DEPLOYMENT)
            row = cursor.fetchone()
            if row is None:
                raise CollectionStateError(_MISSING_DEPLOYMENT)
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
            cursor.execute(queries.SELECT_COLLECTION_STATE, {"model_id": previous})
            state_row = cursor.fetchone()
            if state_row is None or state_row[0] != "ready":
                state = state_row[0] if state_row else "missing"
                raise RollbackUnavailableError(
                    f"the previous blue model {previous!r} cannot serve again: its collection is {state}"
                )
            _flip(cursor, previous)
        return self.get_deployment()

    def get_blue_collection(self) -> BlueCollection | None:
        with self._connection() as connection:
            row = connection.execute(queries.SELECT_BLUE_COLLECTION).fetchone()
        return BlueCollection.from_row(row) if row else None

    # ------------------------------------------------------------------------------------------ search

    def search(
        self,
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
        target = collection or self.get_blue_collection()
        if target is None:
            raise NoBlueModelError()
        parts = max((limit + offset) * PART_OVERFETCH, MIN_PARTS_FETCHED)
        statement = queries.on_table(queries.SEARCH, target.table_name)
        arguments = {
            "query": np.asarray(query_vector, dtype=np.float32),
            "parts": parts,
            "limit": limit,
            "offset": offset,
        }
        with self._connection() as connection:
            if parts > DEFAULT_EF_SEARCH:
                with connection.transaction():
                    # pgvector refuses ef_search above 1000: deeper pages are searched with the widest it allows.
                    ef_search = min(parts, MAX_EF_SEARCH)
                    connection.execute(queries.with_literals(queries.SET_LOCAL_EF_SEARCH, ef_search=ef_search))
                    rows = connection.execute(statement, arguments).fetchall()
            else:
                rows = connection.execute(statement, arguments).fetchall()
        return [SearchHit.from_row(row) for row in rows]

    def __repr__(self) -> str:
        return f"VectorStore({self._database!r})"


# ------------------------------------------------------------------------------ inside one transaction


def _flip(cursor: Cursor, model_id: str) -> str | None:
    """Make ``model_id`` blue inside the caller's transaction; the old blue stays ready for rollback."""
    cursor.execute(queries.LOCK_DEPLOYMENT)
    row = cursor.fetchone()
    if row is None:
        raise CollectionStateError(_MISSING_DEPLOYMENT)
    old_blue, old_previous = row
    if old_blue == model_id:
        return old_blue
    cursor.execute(queries.LOCK_COLLECTION_STATE, {"model_id": model_id})
    state_row = cursor.fetchone()
    if state_row is None:
        raise CollectionNotFoundError(model_id)
    state, table_name = state_row
    if state != "ready":
        raise CollectionStateError(f"model {model_id!r} cannot be deployed: its collection is {state!r}")
    if old_blue is not None and not _has_parts(cursor, table_name) and _blue_has_parts(cursor):
        # A loader pointed at an empty prefix or table reads nothing without failing: the reindex must not turn
        # that into search answering nothing. A catalog emptied on purpose emptied the blue collection too.
        raise EmptyCollectionError(model_id, old_blue)
    if old_previous is not None and old_previous not in (model_id, old_blue):
        # The rollback target moves on: the one before it stops receiving upserts, so its vectors go stale and it
        # can only serve again after a rebuild. Its table (vectors and HNSW index, ~350 MB per 100k items) goes
        # with this flip instead of piling up with every fine-tuning round; the row stays as its history.
        cursor.execute(queries.RETIRE_COLLECTION, {"model_id": old_previous})
        retired = cursor.fetchone()
        if retired is not None:
            cursor.execute(queries.on_table(queries.DROP_COLLECTION_TABLE, retired[0]))
    if old_blue is not None:
        cursor.execute(queries.SET_COLLECTION_STATE, {"state": "ready", "model_id": old_blue})
    cursor.execute(queries.SET_COLLECTION_STATE, {"state": "blue", "model_id": model_id})
    cursor.execute(queries.SET_BLUE, {"blue": model_id, "previous": old_blue})
    logger.info("blue model is now %s (was %s)", model_id, old_blue)
    return old_blue


def _has_parts(cursor: Cursor, table_name: str) -> bool:
    cursor.execute(queries.on_table(queries.HAS_PARTS, table_name))
    row = cursor.fetchone()
    return bool(row and row[0])


def _blue_has_parts(cursor: Cursor) -> bool:
    cursor.execute(queries.SELECT_BLUE_COLLECTION)
    row = cursor.fetchone()
    return row is not None and _has_parts(cursor, BlueCollection.from_row(row).table_name)


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


def _write_changes(cursor: Cursor, table_name: str, changes: Sequence[ItemChange], parts: list[ItemPart]) -> None:
    """Replace every changed item's parts: delete all of them, then insert the new ones (upserts only)."""
    cursor.execute(
        queries.on_table(queries.DELETE_ITEMS, table_name), {"item_ids": [change.item_id for change in changes]}
    )
    if parts:
        cursor.executemany(
            queries.on_table(queries.INSERT_PART, table_name),
            [
                {
                    "item_id": part.item_id,
                    "part": part.part,
                    "content": part.content,
                    "vector": np.asarray(part.vector, dtype=np.float32),
                    "payload": Jsonb(part.payload) if part.payload is not None else None,
                }
                for part in parts
            ],
        )


class _RetryChanges(Exception):
    pass


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)
