"""One loader over several sources: each ``ItemMeta`` goes to the loader of its ``source``.

A catalog may keep texts in PostgreSQL and images in S3; fine-tuning still asks one loader for all
items of a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from embedding_studio.items.loader import ERROR, DataLoader, LoaderError, LoadResult, unique_metas
from embedding_studio.items.types import DownloadedItem, FailedItem, ItemMeta


class AggregatedLoader(DataLoader):
    """``loaders`` maps a source name to a loader, or to a ``{"name", "options"}`` configuration.

    An item whose source has no loader is reported as failed (``error``), not dropped.
    """

    def __init__(self, loaders: Mapping[str, DataLoader | Mapping[str, Any]]) -> None:
        super().__init__(source="aggregated")
        if not loaders:
            raise LoaderError("AggregatedLoader needs at least one source loader")
        from embedding_studio.items.registry import LoaderConfig

        self.loaders: dict[str, DataLoader] = {}
        for source, loader in loaders.items():
            if isinstance(loader, DataLoader):
                self.loaders[source] = loader
            else:
                built = LoaderConfig.model_validate(dict(loader)).create()
                built.source = source
                self.loaders[source] = built

    def load(self, items: Iterable[ItemMeta]) -> LoadResult:
        by_source: dict[str, list[ItemMeta]] = {}
        for meta in unique_metas(items):
            by_source.setdefault(meta.source, []).append(meta)
        result = LoadResult()
        for source, metas in by_source.items():
            loader = self.loaders.get(source)
            if loader is None:
                known = ", ".join(sorted(self.loaders))
                result.failed.extend(
                    FailedItem(meta, ERROR, f"no loader for source {source!r} (known: {known})") for meta in metas
                )
                continue
            result.extend(loader.load(metas))
        return result

    def load_all(
        self, batch_size: int = 1000, on_failed: Callable[[list[FailedItem]], None] | None = None
    ) -> Iterator[list[DownloadedItem]]:
        self.load_all_failed = []
        for source, loader in self.loaders.items():
            for batch in loader.load_all(batch_size, on_failed=on_failed):
                yield [
                    item
                    if item.meta.source == source
                    else DownloadedItem(
                        meta=ItemMeta(item.meta.item_id, source, item.meta.location), data=item.data, extra=item.extra
                    )
                    for item in batch
                ]
            self.load_all_failed.extend(loader.load_all_failed)

    def close(self) -> None:
        for loader in self.loaders.values():
            loader.close()
