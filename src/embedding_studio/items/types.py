"""What identifies an item, and an item once its content has been fetched."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ItemMeta:
    """Identifies one item and the source it lives in; hashable, so a set of them dedupes.

    ``source`` names the loader that can fetch it (e.g. ``"local"``, ``"s3"``, ``"gcs"``,
    ``"pgsql"``); ``location`` is where inside that source (a path, an object key, a row id).
    When ``location`` is empty the loader derives it from ``item_id``.
    """

    item_id: str
    source: str = "default"
    location: str = ""

    @property
    def derived_id(self) -> str:
        return self.item_id


@dataclass(frozen=True)
class DownloadedItem:
    """An item's content (text, dict of fields, or a PIL image) with its meta."""

    meta: ItemMeta
    data: Any
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def item_id(self) -> str:
        return self.meta.item_id


@dataclass(frozen=True)
class FailedItem:
    """An item that could not be loaded, and why (``missing``, ``unreadable``, ``error``)."""

    meta: ItemMeta
    reason: str
    detail: str = ""
