"""The catalog as the product sees it: a loader's items with the items upserted through the API on top.

Items upserted (or deleted) through ``POST /items/upsert`` (``/items/delete``) are recorded in the
``upserted_items`` table. They belong to the catalog as much as the loader's items: fine-tuning must be
able to load an upserted item a session showed, and a reindex from the loader must keep it (and must not
bring back an item deleted through the API). :class:`WithUpsertedItems` wraps any loader so: an upserted
item replaces the loader's item of the same id, a deleted one is missing, the others come from the loader.
An upserted item's ``extra`` is its payload, as a loader's ``extra`` is what search returns with the item.

The table is read through the ``items.upserted_items.UpsertedItems`` it is handed (a reindex hands the one on its
store's database).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Iterator

from embedding_studio.items.loader import MISSING, DataLoader, LoadResult, chunked, reservoir_sample, unique_metas
from embedding_studio.items.types import DownloadedItem, FailedItem, ItemMeta
from embedding_studio.items.upserted_items import UpsertedItem, UpsertedItems


class WithUpsertedItems(DataLoader):
    """``inner``'s items with the API's upserts and deletes applied; reads the database when asked, not before."""

    def __init__(self, inner: DataLoader, upserted: UpsertedItems) -> None:
        super().__init__(source=inner.source)
        self.inner = inner
        self.content_type = inner.content_type
        self._upserted = upserted

    def _upserted_items(self, item_ids: list[str] | None = None) -> dict[str, UpsertedItem]:
        return self._upserted.get(item_ids)

    def _downloaded(self, item: UpsertedItem, meta: ItemMeta | None = None) -> DownloadedItem:
        return DownloadedItem(
            meta=meta or ItemMeta(item_id=item.item_id, source=self.source),
            data=item.data,
            extra=dict(item.payload or {}),
        )

    def load(self, items: Iterable[ItemMeta]) -> LoadResult:
        metas = unique_metas(items)
        upserted = self._upserted_items([meta.item_id for meta in metas])
        result = LoadResult()
        from_inner: list[ItemMeta] = []
        for meta in metas:
            item = upserted.get(meta.item_id)
            if item is None:
                from_inner.append(meta)
            elif item.deleted:
                result.failed.append(FailedItem(meta, MISSING, f"item {meta.item_id!r} was deleted through the API"))
            else:
                result.items.append(self._downloaded(item, meta))
        if from_inner:
            result.extend(self.inner.load(from_inner))
        return result

    def load_all(
        self, batch_size: int = 1000, on_failed: Callable[[list[FailedItem]], None] | None = None
    ) -> Iterator[list[DownloadedItem]]:
        """The loader's items, each replaced or dropped as upserted or deleted; then the upserted items it lacks."""
        self.load_all_failed = []
        upserted = self._upserted_items()
        pending = {item_id: item for item_id, item in upserted.items() if not item.deleted}
        for batch in self.inner.load_all(batch_size, on_failed=on_failed):
            kept: list[DownloadedItem] = []
            for loaded in batch:
                item = upserted.get(loaded.item_id)
                if item is None:
                    kept.append(loaded)
                elif not item.deleted and pending.pop(loaded.item_id, None) is not None:
                    kept.append(self._downloaded(item, loaded.meta))
            if kept:
                yield kept
        self.load_all_failed.extend(self.inner.load_all_failed)
        for page in chunked(list(pending.values()), batch_size):
            yield [self._downloaded(item) for item in page]

    def item_metas(self) -> Iterator[ItemMeta]:
        """The loader's items less those deleted through the API, then the upserted items it lacks."""
        upserted = self._upserted_items()
        listed: set[str] = set()
        for meta in self.inner.item_metas():
            listed.add(meta.item_id)
            item = upserted.get(meta.item_id)
            if item is None or not item.deleted:
                yield meta
        for item in upserted.values():
            if not item.deleted and item.item_id not in listed:
                yield ItemMeta(item_id=item.item_id, source=self.source)

    def sample(self, count: int, seed: int = 0, exclude: Container[str] = ()) -> list[DownloadedItem]:
        """The loader's sample (without the API's items) and the upserted items, drawn down to ``count``."""
        upserted = self._upserted_items()
        if not upserted:
            return self.inner.sample(count, seed=seed, exclude=exclude)
        skipped = _Union(exclude, upserted)
        candidates = self.inner.sample(count, seed=seed, exclude=skipped)
        candidates += [
            self._downloaded(item) for item in upserted.values() if not item.deleted and item.item_id not in exclude
        ]
        return reservoir_sample(candidates, count, seed)

    def close(self) -> None:
        self.inner.close()


class _Union(Container[str]):
    def __init__(self, first: Container[str], second: Container[str]) -> None:
        self.first = first
        self.second = second

    def __contains__(self, value: object) -> bool:
        return value in self.first or value in self.second
