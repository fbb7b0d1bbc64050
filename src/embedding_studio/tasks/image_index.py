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
from collections.abc import Iterator
from typing import Any

import numpy as np

from embedding_studio import vectordb
from embedding_studio.config import get_settings
from embedding_studio.items.display import ItemDisplay, display_payload
from embedding_studio.items.types import FailedItem
from embedding_studio.tasks.params import LoaderSpec, ReindexTaskParams

logger = logging.getLogger(__name__)

IMAGE_KEY = "image"
IMAGE_URL_KEY = "image_url"


def is_image_model(model: Any) -> bool:
    """A model whose items are images builds its own item inputs (``TextToImageEmbeddingModel``)."""
    return callable(getattr(model, "item_input_cache", None))


def image_url(loader: Any, key: str) -> str:
    """Where the image lives, for a person or a front end: ``s3://bucket/key``, ``gs://bucket/key`` or a path."""
    inner = getattr(loader, "inner", loader)
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


def image_source(params: ReindexTaskParams, item_display: ItemDisplay) -> Any:
    """The catalog's images as a reindex source: parts (key as content, payload with the image's key and URL)
    and a ``embed_batch`` that embeds the batch's decoded images."""
    from embedding_studio.items.loaders.upserted import WithUpsertedItems
    from embedding_studio.items.registry import create_loader
    from embedding_studio.tasks.reindex import _Source

    settings = get_settings()
    spec = params.loader or LoaderSpec(name=settings.catalog_loader, options=settings.catalog_loader_options)
    loader = WithUpsertedItems(create_loader(spec.name, **spec.options))
    skipped: list[str] = []
    images: dict[str, Any] = {}

    def report(failed: list[FailedItem]) -> None:
        for failure in failed:
            skipped.append(failure.meta.item_id)
            logger.warning("image %r is not indexed: %s (%s)", failure.meta.item_id, failure.detail, failure.reason)

    def batches(batch_size: int) -> Iterator[list[vectordb.SourcePart]]:
        seen: set[str] = set()
        try:
            for items in prefetched(loader.load_all(batch_size, on_failed=report)):
                parts: list[vectordb.SourcePart] = []
                for item in items:
                    if item.item_id in seen:
                        continue
                    seen.add(item.item_id)
                    if not (hasattr(item.data, "size") and hasattr(item.data, "mode")):
                        report([FailedItem(item.meta, "unreadable", "not an image (an image model indexes images)")])
                        continue
                    key = inner_key(loader, item.meta)
                    payload = {IMAGE_KEY: key, IMAGE_URL_KEY: image_url(loader, key)}
                    payload.update(display_payload(item.data, display=item_display, payload=item.extra) or {})
                    images[item.item_id] = item.data
                    parts.append(vectordb.SourcePart(item.item_id, 0, key, payload))
                yield parts
        finally:
            loader.close()
        if skipped:
            logger.warning("%d images could not be read and were not indexed, e.g. %s", len(skipped), skipped[:5])

    return _Source(name=f"loader {spec.name} (images)", batches=batches, total_parts=None, skipped=skipped), images


def inner_key(loader: Any, meta: Any) -> str:
    inner = getattr(loader, "inner", loader)
    key_for = getattr(inner, "key_for", None)
    return key_for(meta) if key_for is not None else meta.item_id


def embed_images(model: Any, images: dict[str, Any], parts: list[vectordb.SourcePart], batch_size: int) -> np.ndarray:
    """The batch's images, embedded in batches, and released: a reindex holds one batch of pixels at a time."""
    pictures = [images.pop(part.item_id) for part in parts]
    return np.asarray(model.encode_items(pictures, batch_size=batch_size), dtype=np.float32)
