"""Reindexing an image catalog with a text-to-image model: the part a reindex does differently for images.

Each image is one part whose ``content`` is its key in the store, and whose payload (the same display payload dict
text items get, ``items.display``) holds ``image`` (the key) and ``image_url`` (where it lives: ``s3://``,
``gs://`` or a file path), so search can show the picture. Images are read and decoded by the image loader's
thread pool (``ObjectStoreLoader``), one batch ahead of the forward pass (:func:`prefetched`), so decoding never
runs on the thread that embeds. An image that cannot be read or decoded is never skipped silently: it is logged with
its reason and counted in the reindex's ``skipped_items``.

The source is the task's loader, else the configured catalog loader: an image collection cannot be re-embedded
from a collection (it stores keys, not pixels).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from embedding_studio import vectordb
from embedding_studio.config import get_settings
from embedding_studio.items.display import ItemDisplay, display_payload
from embedding_studio.items.types import DownloadedItem, FailedItem
from embedding_studio.tasks.params import LoaderSpec, ReindexTaskParams
from embedding_studio.vectordb import MAINTAINED_STATES, VectorStore

if TYPE_CHECKING:  # at run time imported where used: reindex imports this module
    from embedding_studio.tasks.reindex import ShardReader, ShardSlice

logger = logging.getLogger(__name__)

IMAGE_KEY = "image"
IMAGE_URL_KEY = "image_url"


def image_url(loader: Any, key: str) -> str:
    """Where the image lives, for a person or a front end: ``s3://bucket/key``, ``gs://bucket/key`` or a path."""
    inner = getattr(loader, "inner", loader)
    url_for_key = getattr(inner, "url_for_key", None)
    if url_for_key is not None:  # pgsql_image: the key is a column's value, a URL or a key under its base URL
        return str(url_for_key(key))
    bucket = getattr(inner, "bucket", None)
    if bucket:
        scheme = "gs" if type(inner).__module__.endswith(".gcs") else "s3"
        return f"{scheme}://{bucket}/{key}"  # the key already holds the loader's prefix
    root = getattr(inner, "root", None)
    return str(root / key) if root is not None else key


def prefetched(batches: Iterator[Any], depth: int = 1) -> Iterator[Any]:
    """``batches`` read on a thread of their own, ``depth`` ahead of the consumer: while the model embeds one
    batch, the loader's pool downloads and decodes the next."""
    handoff: queue.Queue[Any] = queue.Queue(maxsize=depth)
    end = object()
    failure: list[BaseException] = []
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        handoff.put(batch, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as error:  # handed to the consumer
            failure.append(error)
        finally:
            handoff.put(end)

    thread = threading.Thread(target=produce, name="image-prefetch", daemon=True)
    thread.start()
    try:
        while (batch := handoff.get()) is not end:
            yield batch
        if failure:
            raise failure[0]
    finally:
        stop.set()
        while thread.is_alive():
            try:
                handoff.get(timeout=0.2)
            except queue.Empty:
                pass


def image_source(store: VectorStore, params: ReindexTaskParams, item_display: ItemDisplay) -> Any:
    """The catalog's images as a reindex source: parts (key as content, payload with the image's key and URL)
    and a ``embed_batch`` that embeds the batch's decoded images; the API's upserts are read from ``store``'s
    database."""
    from embedding_studio.items.loaders.upserted import WithUpsertedItems
    from embedding_studio.items.registry import create_loader
    from embedding_studio.tasks.reindex import _Source

    settings = get_settings()
    spec = params.loader or LoaderSpec(name=settings.catalog_loader, options=settings.catalog_loader_options)
    loader = WithUpsertedItems(create_loader(spec.name, **spec.options), store.upserted_items)
    skipped: list[str] = []
    images: dict[str, Any] = {}

    def report(failed: list[FailedItem]) -> None:
        for failure in failed:
            skipped.append(failure.meta.item_id)
            logger.warning("image %r is not indexed: %s (%s)", failure.meta.item_id, failure.detail, failure.reason)

    def batches(batch_size: int) -> Iterator[list[vectordb.SourcePart]]:
        seen: set[str] = set()
        try:
            for items in prefetched(
                with_upserted_images(loader, loader.load_all(batch_size, on_failed=report), report)
            ):
                parts, pictures = image_parts(items, loader, item_display, report, seen)
                images.update((part.item_id, picture) for part, picture in zip(parts, pictures, strict=True))
                yield parts
        finally:
            loader.close()
        if skipped:
            logger.warning("%d images could not be read and were not indexed, e.g. %s", len(skipped), skipped[:5])

    source = _Source(
        name=f"loader {spec.name} (images)",
        batches=batches,
        total_parts=None,
        skipped=skipped,
        reader=image_reader(store, spec, item_display),
    )
    return source, images


def image_parts(
    items: list[DownloadedItem],
    loader: Any,
    item_display: ItemDisplay,
    report: Callable[[list[FailedItem]], None],
    seen: set[str],
) -> tuple[list[vectordb.SourcePart], list[Any]]:
    """Each loaded picture as one part (its key as content; a payload with its key, URL and display fields) and the
    picture itself; an item whose data is not a picture is reported, an id already in ``seen`` is kept once."""
    parts: list[vectordb.SourcePart] = []
    pictures: list[Any] = []
    for item in items:
        if item.item_id in seen:
            continue
        seen.add(item.item_id)
        if not (hasattr(item.data, "size") and hasattr(item.data, "mode")):
            report([FailedItem(item.meta, "unreadable", "not an image (an image model indexes images)")])
            continue
        key = str(item.extra.get(IMAGE_KEY) or inner_key(loader, item.meta))
        payload = {IMAGE_KEY: key, IMAGE_URL_KEY: image_url(loader, key)}
        payload.update(display_payload(item.data, display=item_display, payload=item.extra) or {})
        parts.append(vectordb.SourcePart(item.item_id, 0, key, payload))
        pictures.append(item.data)
    return parts, pictures


def image_reader(store: VectorStore, spec: LoaderSpec, item_display: ItemDisplay) -> ShardReader:
    """The image catalog (the loader with the API's upserts on top) by item ids, for a sharded reindex
    (``tasks.shards``): listed once per reader, each slice's pictures read and decoded by the loader's pool. An image
    that cannot be read is reported and counted as skipped, as in the single-job path; an item deleted through the
    API since the listing is left to the catch-up, as a text catalog's is."""
    from embedding_studio.items.loader import MISSING
    from embedding_studio.tasks.reindex import CatalogByIds, ShardReader, ShardSlice

    catalog = CatalogByIds(store, spec)

    def read(ids: list[str]) -> ShardSlice:
        skipped: list[str] = []

        def report(failed: list[FailedItem]) -> None:
            for failure in failed:
                if failure.reason == MISSING:
                    logger.info("image %r is not indexed: %s", failure.meta.item_id, failure.detail)
                    continue
                skipped.append(failure.meta.item_id)
                logger.warning("image %r is not indexed: %s (%s)", failure.meta.item_id, failure.detail, failure.reason)

        result = catalog.load(ids)
        report(result.failed)
        loader = catalog.loader
        items = [item for batch in with_upserted_images(loader, iter([result.items]), report) for item in batch]
        parts, pictures = image_parts(items, loader, item_display, report, set())
        return ShardSlice(parts=parts, inputs=pictures, skipped=skipped)

    return ShardReader(
        describe={"loader": {"name": spec.name, "options": spec.options}, "images": True},
        item_ids=catalog.item_ids,
        read=read,
        close=catalog.close,
    )


def with_upserted_images(
    loader: Any, batches: Iterator[list[DownloadedItem]], report: Callable[[list[FailedItem]], None]
) -> Iterator[list[DownloadedItem]]:
    """``batches`` with each image upserted through the API read by its key: the upserted-items layer gives an
    upsert's key (its ``data``, a string), not the picture, so it is read here, a batch's keys at once by the image
    loader's pool, on the prefetching thread. The loader is the configured catalog's, where an upsert's key is
    resolved (``image_embedder``), else the reindex's own. An image that cannot be read is reported, not indexed."""
    from embedding_studio.items.registry import create_configured_loader, reads_images

    key_loader: Any = None
    try:
        for batch in batches:
            upserted = [item for item in batch if isinstance(item.data, str)]
            if not upserted:
                yield batch
                continue
            if key_loader is None:
                catalog = get_settings().catalog_loader
                key_loader = create_configured_loader() if reads_images(catalog) else getattr(loader, "inner", loader)
            outcomes = key_loader.load_keys([item.data for item in upserted])
            kept: list[DownloadedItem] = []
            for item in batch:
                if not isinstance(item.data, str):
                    kept.append(item)
                    continue
                outcome = outcomes[item.data]
                if isinstance(outcome, FailedItem):
                    report([FailedItem(item.meta, outcome.reason, f"upserted image {item.data!r}: {outcome.detail}")])
                    continue
                kept.append(DownloadedItem(item.meta, outcome.data, {IMAGE_KEY: item.data, **item.extra}))
            yield kept
    finally:
        if key_loader is not None and key_loader is not getattr(loader, "inner", loader):
            key_loader.close()


def inner_key(loader: Any, meta: Any) -> str:
    inner = getattr(loader, "inner", loader)
    key_for = getattr(inner, "key_for", None)
    return key_for(meta) if key_for is not None else meta.item_id


# ---------------------------------------------------------------------------------------------- upserts


def holds_images(store: VectorStore, collection: vectordb.Collection) -> bool:
    """Whether a collection is an image model's: its parts carry the image's URL (written only by
    :func:`image_source` and image upserts). Read from one row, so the API can answer without loading the model;
    an empty collection reads as text."""
    return store.any_payload_with_key(collection.table_name, IMAGE_URL_KEY)


def check_upsert_kinds(upserts: list[Any], store: VectorStore) -> None:
    """Refuse, when the upsert is asked for, items the serving collections cannot embed: a text item into an image
    collection, an image into a text one (``ValueError`` naming the item and the collection), rather than a task
    that fails in the worker; the serving collections are ``store``'s."""
    if not upserts:
        return
    for collection in store.list_collections(MAINTAINED_STATES):
        images = holds_images(store, collection)
        for item in upserts:
            if images and item.image is None:
                raise ValueError(
                    f"item {item.item_id!r} is text, but the collection of {collection.model_id!r} holds images: "
                    'upsert it as {"item_id", "image": <its key in the catalog\'s image loader>}'
                )
            if not images and item.image is not None:
                raise ValueError(
                    f"item {item.item_id!r} is an image, but the collection of {collection.model_id!r} holds text: "
                    "upsert it with text or fields"
                )


def image_embedder(model: Any, batch_size: int) -> Any:
    """For an upsert into an image collection: embeds image keys (the parts' content) by reading each through the
    configured catalog loader, which must be an image loader (the one the catalog was indexed from); an image that
    cannot be read fails the upsert, naming it and why."""
    from embedding_studio.items.registry import create_configured_loader, reads_images

    settings = get_settings()
    if not reads_images(settings.catalog_loader):
        raise ValueError(
            f"image upserts are read through the catalog loader, and {settings.catalog_loader!r} is not an image "
            "loader (set EMBEDDING_STUDIO_CATALOG_LOADER to local_image, s3_image or gcs_image)"
        )

    def embed(keys: list[str]) -> np.ndarray:
        loader = create_configured_loader()
        try:
            outcomes = loader.load_keys(keys)  # type: ignore[attr-defined]  # every image loader reads by key
        finally:
            loader.close()
        for key in keys:
            failure = outcomes[key]
            if isinstance(failure, FailedItem):
                raise ValueError(f"image {key!r} cannot be upserted: {failure.detail} ({failure.reason})")
        pictures = [outcomes[key].data for key in keys]
        return np.asarray(model.encode_items(pictures, batch_size=batch_size), dtype=np.float32)

    return embed


def upserted_image_payload(key: str, payload: dict[str, Any] | None) -> dict[str, Any]:
    """An upserted image's payload as a reindexed one's: its key and URL (through the catalog loader), then the
    caller's own fields."""
    from embedding_studio.items.registry import create_configured_loader

    loader = create_configured_loader()
    try:
        return {IMAGE_KEY: key, IMAGE_URL_KEY: image_url(loader, key), **(payload or {})}
    finally:
        loader.close()
