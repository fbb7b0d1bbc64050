"""The items upserted (or deleted) through the API, as the ``upserted_items`` table keeps them.

:class:`UpsertedItems` is handed the :class:`~embedding_studio.db.Database` it reads and sends only the statements
of ``items.queries``. The rows are written by the vector store, in the transaction that logs the change
(:meth:`UpsertedItems.record`, on the store's connection), so an upsert refused whole leaves no row here either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from embedding_studio.db import Database
from embedding_studio.items import queries

__all__ = ["UpsertedItem", "UpsertedItems"]


@dataclass(frozen=True)
class UpsertedItem:
    """An item as last upserted (or deleted) through the API: part of the catalog, on top of the loader."""

    item_id: str
    data: str | dict[str, Any] | None
    payload: dict[str, Any] | None
    deleted: bool

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> UpsertedItem:
        """The item of a row with ``items.queries.UPSERTED_ITEM_COLUMNS``."""
        item_id, data, payload, deleted = row
        return cls(item_id=item_id, data=data, payload=payload, deleted=deleted)


class UpsertedItems:
    """Reads of the ``upserted_items`` table on the database it is handed; writes on a caller's transaction."""

    def __init__(self, database: Database) -> None:
        self._database = database

    @property
    def database(self) -> Database:
        return self._database

    def get(self, item_ids: Sequence[str] | None = None) -> dict[str, UpsertedItem]:
        """Upserted and deleted items by id: those of ``item_ids``, or all of them."""
        with self._database.connection() as connection:
            rows = connection.execute(
                queries.SELECT_UPSERTED_ITEMS, {"ids": list(item_ids) if item_ids is not None else None}
            ).fetchall()
        return {item.item_id: item for item in map(UpsertedItem.from_row, rows)}

    @staticmethod
    def record(cursor: psycopg.Cursor[Any], items: Sequence[UpsertedItem]) -> None:
        """Write each item's latest upsert or delete with ``cursor``, inside its transaction (the change log's)."""
        cursor.executemany(
            queries.RECORD_UPSERTED_ITEM,
            [
                {
                    "item_id": item.item_id,
                    "data": _json(item.data),
                    "payload": _json(item.payload or None),
                    "deleted": item.deleted,
                }
                for item in items
            ],
        )


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)
