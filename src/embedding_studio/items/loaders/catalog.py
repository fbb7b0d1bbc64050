"""A JSONL catalog (one JSON object with an ``"_id"`` per line, e.g. BEIR's ``{"_id", "title", "text"}``).

An item is the line's fields without ``_id``, whatever they are called (``{"name", "description", "sku"}``
as well as ``{"title", "text"}``): which of them make its text is the fine-tuning method's ``item_text``
(``items.item_parts``), the same for training, reindex and upserts, never the loader's choice. The demo's
catalogs (the repository's ``data/``) are in this form, and by default their items read ``"title. text"``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Container, Iterable, Iterator
from pathlib import Path
from typing import Any

from embedding_studio.items.loader import (
    MISSING,
    DataLoader,
    LoaderError,
    LoadResult,
    RetryPolicy,
    chunked,
    paused_gc,
    reservoir_sample,
    unique_metas,
)
from embedding_studio.items.types import DownloadedItem, FailedItem, ItemMeta


class CatalogFormatError(LoaderError):
    """A line of the catalog is not a JSON object with an ``_id``."""


def default_catalog_path() -> Path:
    """The msmarco slice in a repository checkout's ``data/`` (an installed package ships no data, so there a
    catalog needs its ``path``): what a checkout searches when no catalog is configured."""
    return Path(__file__).resolve().parents[4] / "data" / "msmarco" / "corpus.jsonl"


class JsonlCatalogLoader(DataLoader):
    """Reads the catalog once (on first use) into memory; lookups are then dictionary reads."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        retry: RetryPolicy | dict[str, Any] | None = None,
        source: str = "default",
    ) -> None:
        super().__init__(retry=retry, source=source)
        self.path = Path(path) if path is not None else default_catalog_path()
        if not self.path.is_file():
            hint = (
                ""
                if path is not None
                else (
                    ": no catalog path was given (the loader's path option, EMBEDDING_STUDIO_CATALOG_LOADER_OPTIONS) "
                    "and this is not a repository checkout with data/msmarco"
                )
            )
            raise LoaderError(f"catalog file {self.path} does not exist{hint}")
        self._records: dict[str, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def _iter_records(self) -> Iterator[dict[str, Any]]:
        with self.path.open("r", encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise CatalogFormatError(f"{self.path}:{line_number}: not valid JSON ({error.msg})") from error
                if not isinstance(record, dict) or "_id" not in record:
                    raise CatalogFormatError(f'{self.path}:{line_number}: expected an object with an "_id" field')
                yield record

    def records(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            if self._records is None:
                self._records = {str(record["_id"]): record for record in self._iter_records()}
            return self._records

    @staticmethod
    def _content(record: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in record.items() if key != "_id"}

    def load(self, items: Iterable[ItemMeta]) -> LoadResult:
        records = self.records()
        result = LoadResult()
        with paused_gc():
            for meta in unique_metas(items):
                record = records.get(meta.location or meta.item_id)
                if record is None:
                    result.failed.append(FailedItem(meta, MISSING, f"id {meta.item_id!r} is not in {self.path}"))
                else:
                    result.items.append(DownloadedItem(meta=meta, data=self._content(record)))
        return result

    def sample(self, count: int, seed: int = 0, exclude: Container[str] = ()) -> list[DownloadedItem]:
        item_ids = reservoir_sample((item_id for item_id in self.records() if item_id not in exclude), count, seed)
        return list(self.load(ItemMeta(item_id=item_id, source=self.source) for item_id in item_ids).items)

    def item_metas(self) -> Iterator[ItemMeta]:
        return (ItemMeta(item_id=item_id, source=self.source) for item_id in self.records())

    def load_all(
        self, batch_size: int = 1000, on_failed: Callable[[list[FailedItem]], None] | None = None
    ) -> Iterator[list[DownloadedItem]]:
        if batch_size < 1:
            raise LoaderError(f"batch_size must be at least 1, got {batch_size}")
        self.load_all_failed = []
        records = list(self.records().items())
        for page in chunked(records, batch_size):
            yield [
                DownloadedItem(meta=ItemMeta(item_id=item_id, source=self.source), data=self._content(record))
                for item_id, record in page
            ]
