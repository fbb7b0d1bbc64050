"""Plain data the vector store hands to the rest of the system; each row type is read through one ``from_row``.

A ``from_row`` reads a row with the columns its statement in ``vectordb.queries`` names (``COLLECTION_COLUMNS``,
``MODEL_COLUMNS``, ...), as psycopg's default tuple rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from embedding_studio.items.display import ItemDisplay
from embedding_studio.items.item_text import ItemText
from embedding_studio.items.upserted_items import UpsertedItem

__all__ = [
    "BlueCollection",
    "Collection",
    "Deployment",
    "EmbeddingModelRecord",
    "ItemChange",
    "ItemPart",
    "SearchHit",
    "SourcePart",
    "UpsertedItem",
]


@dataclass(frozen=True)
class ItemPart:
    """A part of an item with its vector: what a build or an upsert writes into a collection."""

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

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> SourcePart:
        """The part of a row with ``vectordb.queries.SOURCE_PART_COLUMNS``."""
        item_id, part, content, payload = row
        return cls(item_id=item_id, part=part, content=content, payload=payload)


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

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Collection:
        """The collection of a row with ``vectordb.queries.COLLECTION_COLUMNS``."""
        (
            model_id,
            table_name,
            state,
            item_count,
            change_seq_start,
            created_at,
            updated_at,
            item_text,
            item_display,
            dim,
        ) = row
        return cls(
            model_id=model_id,
            table_name=table_name,
            state=state,
            item_count=item_count,
            dim=dim,
            change_seq_start=change_seq_start,
            created_at=created_at,
            updated_at=updated_at,
            item_text=ItemText.from_options(item_text),
            item_display=ItemDisplay.from_options(item_display),
        )


@dataclass(frozen=True)
class Deployment:
    blue_model_id: str | None
    previous_blue_model_id: str | None
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Deployment:
        """The deployment of a row with ``vectordb.queries.DEPLOYMENT_COLUMNS``."""
        blue_model_id, previous_blue_model_id, updated_at = row
        return cls(blue_model_id=blue_model_id, previous_blue_model_id=previous_blue_model_id, updated_at=updated_at)


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

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> EmbeddingModelRecord:
        """The model of a row of ``vectordb.queries.SELECT_MODELS`` (its collection's state and count joined)."""
        model_id, dim, source, model_uri, created_at, state, item_count, is_blue, is_previous_blue = row
        return cls(
            id=model_id,
            dim=dim,
            source=source,
            model_uri=model_uri,
            created_at=created_at,
            collection_state=state,
            item_count=item_count or 0,
            is_blue=bool(is_blue),
            is_previous_blue=bool(is_previous_blue),
        )


@dataclass(frozen=True)
class BlueCollection:
    model_id: str
    table_name: str

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> BlueCollection:
        """The blue collection of a row of ``vectordb.queries.SELECT_BLUE_COLLECTION``."""
        model_id, table_name = row
        return cls(model_id=model_id, table_name=table_name)


@dataclass(frozen=True)
class SearchHit:
    item_id: str
    score: float
    payload: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> SearchHit:
        """The hit of a row of ``vectordb.queries.SEARCH``."""
        item_id, score, payload = row
        return cls(item_id=item_id, score=float(score), payload=payload)


@dataclass(frozen=True)
class ItemChange:
    """One upsert (``data``: the item, a text or a JSON object) or delete (``data`` None) of an item, as logged."""

    item_id: str
    operation: str  # "upsert" | "delete"
    data: str | dict[str, Any] | None = None
    payload: dict[str, Any] | None = None
    seq: int = 0

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ItemChange:
        """The change of a row with ``vectordb.queries.CHANGE_COLUMNS``."""
        seq, item_id, operation, data, payload = row
        return cls(item_id=item_id, operation=operation, data=data, payload=payload, seq=seq)
