"""Reindex: embed every item with a model into a new collection, then (optionally) flip search to it.

The new collection is bulk-loaded from a snapshot (the source collection's parts, or the catalog: a
loader's ``load_all`` with the items upserted through the API on top), indexed once at the end, caught
up with the item changes logged meanwhile, and only then marked ready or blue in one transaction (see
``vectordb.store``). Embedding and writing overlap: a writer thread streams vectors into one binary COPY
while the next batch is encoded.

Two reindexes into one model never run together: a PostgreSQL advisory lock (held by the worker's
connection, so a killed worker releases it) makes the second wait (``wait_on_conflict``) or be refused.

Items become text parts with ``items.item_parts`` and the build's ``ItemText`` (the fine-tuning method's,
so search serves the texts the model was trained on); the collection keeps it for later upserts. A source
collection cut with another ``ItemText`` cannot be copied, so the items are then read from the catalog.

Everything is read and written through the ``VectorStore`` the reindex is handed (``run_reindex(..., store=)``),
whose ``Database`` also holds the destination's lock.

Each item read from the catalog gets a display payload (``items.display``: a title, a snippet of the text
the model embeds, the fields the build's ``ItemDisplay`` names, the loader's own payload on top), stored with
its parts so search can show what it found; parts copied from a collection keep the payload they have.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from embedding_studio import vectordb
from embedding_studio.config import get_settings
from embedding_studio.db import Database
from embedding_studio.items.display import ItemDisplay, display_payload
from embedding_studio.items.item_text import ItemText, ItemTextError, item_parts
from embedding_studio.serving.models import resolve_model
from embedding_studio.tasks import reindex_queries as queries
from embedding_studio.tasks.errors import TaskCanceledError
from embedding_studio.tasks.params import LoaderSpec, ReindexTaskParams
from embedding_studio.vectordb import VectorStore

if TYPE_CHECKING:
    from embedding_studio.items.loader import LoadResult
    from embedding_studio.items.types import ItemMeta

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
ShouldStop = Callable[[], bool]
ENCODE_BATCH_SIZE = 64


def encode_batch_size(model: Any, read_batch_size: int) -> int:
    """Texts per forward pass: a whole read batch on a GPU, where small batches leave it idle between kernel
    launches; 64 on a CPU, where bigger batches only pad more."""
    device = getattr(model, "device", None)
    return max(1, read_batch_size) if getattr(device, "type", str(device)) == "cuda" else ENCODE_BATCH_SIZE


def item_embedder(model: Any, read_batch_size: int) -> Callable[[list[Any]], np.ndarray]:
    """The destination model on a read batch's inputs (texts, or an image model's pictures): one float32 vector
    each, ``encode_batch_size`` inputs per forward pass. The owner's single-job and sharded paths and every shard
    helper embed with it."""
    forward_batch = encode_batch_size(model, read_batch_size)

    def embed(inputs: list[Any]) -> np.ndarray:
        return np.asarray(model.encode_items(inputs, batch_size=forward_batch), dtype=np.float32)

    return embed


@dataclass(frozen=True)
class ReindexResult:
    model_id: str
    source: str
    item_count: int
    part_count: int
    deployed_as_blue: bool
    seconds: float
    phase_seconds: dict[str, float] = field(default_factory=dict)
    """Where the time went: "embed_and_write", "index", "catch_up_and_flip"."""
    #: catalog items left out because they have no text under the build's ``item_text`` (logged with examples)
    skipped_items: int = 0
    #: a sharded build (``tasks.shards``): how many shards, how many each worker embedded, how many ran again
    shards: int = 0
    shard_workers: dict[str, int] = field(default_factory=dict)
    retried_shards: int = 0

    def summary(self) -> str:
        """What happened, in one line: the finished task's last message, and what ``reindex --here`` prints."""
        counts = f"{self.item_count:,} items ({self.part_count:,} parts)"
        skipped = f"; {self.skipped_items:,} items without text left out" if self.skipped_items else ""
        if self.deployed_as_blue:
            return f"search now answers from model {self.model_id}: {counts}, indexed in {self.seconds:.1f}s{skipped}"
        return (
            f"indexed {counts} with model {self.model_id} in {self.seconds:.1f}s{skipped}; not deployed: search "
            "still answers from the blue model (deploy_as_blue was not asked for)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "source": self.source,
            "item_count": self.item_count,
            "part_count": self.part_count,
            "deployed_as_blue": self.deployed_as_blue,
            "skipped_items": self.skipped_items,
            **(
                {
                    "shards": self.shards,
                    "shard_workers": dict(self.shard_workers),
                    "retried_shards": self.retried_shards,
                }
                if self.shards
                else {}
            ),
            "seconds": round(self.seconds, 3),
            "phase_seconds": {phase: round(value, 3) for phase, value in self.phase_seconds.items()},
        }


class ReindexConflictError(RuntimeError):
    """Another reindex into the same model holds its lock and this one was told not to wait."""


def _lock_key(model_id: str) -> int:
    return zlib.crc32(("reindex:" + model_id).encode("utf-8"))


class DestinationLock:
    """A session-level advisory lock on the destination model, on a connection of ``database`` kept for the whole
    build."""

    def __init__(self, model_id: str, database: Database) -> None:
        self.model_id = model_id
        self.database = database
        self._context: Any = None
        self._connection: Any = None

    def try_acquire(self) -> bool:
        if self._connection is None:
            self._context = self.database.connection()
            self._connection = self._context.__enter__()
        row = self._connection.execute(queries.TRY_ADVISORY_LOCK, {"key": _lock_key(self.model_id)}).fetchone()
        return bool(row and row[0])

    def release(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.execute(queries.ADVISORY_UNLOCK, {"key": _lock_key(self.model_id)})
        finally:
            self._context.__exit__(None, None, None)
            self._connection = None
            self._context = None


def acquire_destination(
    database: Database,
    model_id: str,
    wait: bool,
    should_stop: ShouldStop,
    on_wait: Callable[[], None],
    poll_s: float = 0.5,
) -> DestinationLock:
    lock = DestinationLock(model_id, database)
    waited = False
    while not lock.try_acquire():
        if not wait:
            lock.release()
            raise ReindexConflictError(
                f"another reindex into model {model_id!r} is running; send this one with wait_on_conflict=true "
                "to run it after that one"
            )
        if not waited:
            on_wait()
            waited = True
        if should_stop():
            lock.release()
            raise TaskCanceledError("canceled while waiting for another reindex into the same model")
        time.sleep(poll_s)
    return lock


@dataclass(frozen=True)
class ShardSlice:
    """Items of a source read by id: their parts, what the model embeds for each part (its text, or an image model's
    decoded picture, one per part), and the ids that are not indexed (no text under the build's ``ItemText``, an
    image that cannot be read)."""

    parts: list[vectordb.SourcePart]
    inputs: list[Any]
    skipped: list[str]

    @classmethod
    def of_text(cls, parts: list[vectordb.SourcePart], skipped: list[str]) -> ShardSlice:
        return cls(parts=parts, inputs=[part.content for part in parts], skipped=skipped)


@dataclass(frozen=True)
class ShardReader:
    """A source read by slices of item ids, so several workers can embed one catalog (``tasks.shards``).

    ``describe`` is JSON a helper job rebuilds the same reader from (:func:`shard_reader_of`); ``item_ids`` lists
    the source's ids sorted (a slice is then the same on every worker); ``read(ids)`` returns those items'
    :class:`ShardSlice`."""

    describe: dict[str, Any]
    item_ids: Callable[[], list[str]]
    read: Callable[[list[str]], ShardSlice]
    close: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class _Source:
    name: str
    batches: Callable[[int], Iterator[list[vectordb.SourcePart]]]
    total_parts: int | None
    #: ids of the items that had no text (filled while ``batches`` is read)
    skipped: list[str] = field(default_factory=list)
    #: the same source read by slices of ids, for a sharded build; None where it cannot be
    reader: ShardReader | None = None


def _collection_source(store: VectorStore, model_id: str, item_text: ItemText, item_display: ItemDisplay) -> _Source:
    """A collection's parts as they are; an item stored without a payload (indexed before items had one) gets
    one from its first part's text, so rebuilding an old collection makes its results readable."""

    def batches(batch_size: int) -> Iterator[list[vectordb.SourcePart]]:
        filled: tuple[str, dict[str, Any] | None] = ("", None)
        for parts in store.iter_source_parts(model_id, batch_size):
            batch: list[vectordb.SourcePart] = []
            for part in parts:
                if part.payload is None:
                    if filled[0] != part.item_id:
                        filled = (part.item_id, display_payload(part.content, item_text, item_display))
                    part = vectordb.SourcePart(part.item_id, part.part, part.content, filled[1])
                batch.append(part)
            yield batch

    return _Source(
        name=f"collection of {model_id}",
        batches=batches,
        total_parts=store.count_source_parts(model_id),
        reader=_collection_reader(store, model_id, item_text, item_display),
    )


def _collection_reader(
    store: VectorStore, model_id: str, item_text: ItemText, item_display: ItemDisplay
) -> ShardReader:
    """A collection's parts by item ids; a part without a payload gets one, as :func:`_collection_source` does."""

    def read(item_ids: list[str]) -> ShardSlice:
        collection = store.get_collection(model_id)
        if collection is None:
            raise vectordb.CollectionNotFoundError(model_id)
        parts: list[vectordb.SourcePart] = []
        filled: tuple[str, dict[str, Any] | None] = ("", None)
        for part in store.source_parts_of(collection.table_name, item_ids):
            if part.payload is None:
                if filled[0] != part.item_id:
                    filled = (part.item_id, display_payload(part.content, item_text, item_display))
                part = vectordb.SourcePart(part.item_id, part.part, part.content, filled[1])
            parts.append(part)
        return ShardSlice.of_text(parts, [])

    return ShardReader(describe={"collection": model_id}, item_ids=lambda: store.source_item_ids(model_id), read=read)


def _item_source_parts(
    item: Any, item_text: ItemText, item_display: ItemDisplay, skipped: list[str]
) -> list[vectordb.SourcePart]:
    """A loaded item's parts with its display payload; none (and its id in ``skipped``) when it has no text."""
    try:
        texts = item_parts(item.data, item_text)
    except ItemTextError as error:
        if not skipped:
            logger.warning("item %r has no text and is not indexed: %s", item.item_id, error)
        skipped.append(item.item_id)
        return []
    payload = display_payload(item.data, item_text, item_display, item.extra)
    return [vectordb.SourcePart(item.item_id, index, text, payload) for index, text in enumerate(texts)]


class CatalogByIds:
    """The catalog (a loader with the API's upserts on top) listed once, then loaded by slices of ids: what a shard
    reader of a loader reads through, text or images."""

    def __init__(self, store: VectorStore, spec: LoaderSpec) -> None:
        from embedding_studio.items.loaders.upserted import WithUpsertedItems
        from embedding_studio.items.registry import create_loader

        self.loader = WithUpsertedItems(create_loader(spec.name, **spec.options), store.upserted_items)
        self._metas: dict[str, ItemMeta] = {}

    def item_ids(self) -> list[str]:
        if not self._metas:
            self._metas.update((meta.item_id, meta) for meta in self.loader.item_metas())
        return sorted(self._metas)

    def load(self, ids: list[str]) -> LoadResult:
        """The items' ``LoadResult``; an item deleted through the API since the listing, or gone, is among its
        failures."""
        from embedding_studio.items.types import ItemMeta

        if not self._metas:
            self.item_ids()  # a helper's metas (an object key may differ from its id)
        source = self.loader.source
        metas = [self._metas.get(item_id) or ItemMeta(item_id=item_id, source=source) for item_id in ids]
        return self.loader.load(metas)

    def close(self) -> None:
        self.loader.close()


def _loader_reader(store: VectorStore, spec: LoaderSpec, item_text: ItemText, item_display: ItemDisplay) -> ShardReader:
    """The catalog by item ids: listed once per reader, loaded by slice."""
    catalog = CatalogByIds(store, spec)

    def read(ids: list[str]) -> ShardSlice:
        result = catalog.load(ids)
        for failure in result.failed:  # deleted through the API since the listing (the catch-up applies it), or gone
            logger.info("item %r is not indexed: %s (%s)", failure.meta.item_id, failure.detail, failure.reason)
        skipped: list[str] = []
        by_id = {item.item_id: item for item in result.items}
        parts: list[vectordb.SourcePart] = []
        for item_id in ids:
            if item_id in by_id:
                parts.extend(_item_source_parts(by_id[item_id], item_text, item_display, skipped))
        return ShardSlice.of_text(parts, skipped)

    return ShardReader(
        describe={"loader": {"name": spec.name, "options": spec.options}},
        item_ids=catalog.item_ids,
        read=read,
        close=catalog.close,
    )


def shard_reader_of(
    store: VectorStore, describe: dict[str, Any], item_text: ItemText, item_display: ItemDisplay
) -> ShardReader:
    """The reader a helper job builds from the owner's ``ShardReader.describe``."""
    if "collection" in describe:
        return _collection_reader(store, str(describe["collection"]), item_text, item_display)
    loader = describe["loader"]
    spec = LoaderSpec(name=loader["name"], options=loader.get("options") or {})
    if describe.get("images"):
        from embedding_studio.tasks.image_index import image_reader

        return image_reader(store, spec, item_display)
    return _loader_reader(store, spec, item_text, item_display)


def _loader_source(
    store: VectorStore, spec: LoaderSpec, item_text: ItemText, item_display: ItemDisplay = ItemDisplay()
) -> _Source:
    """The catalog: the loader's items with the API's upserts and deletes applied, cut with ``item_text``, each
    with its display payload under ``item_display``."""
    from embedding_studio.items.loaders.upserted import WithUpsertedItems
    from embedding_studio.items.registry import create_loader

    loader = WithUpsertedItems(create_loader(spec.name, **spec.options), store.upserted_items)
    skipped: list[str] = []

    def batches(batch_size: int) -> Iterator[list[vectordb.SourcePart]]:
        seen: set[str] = set()
        try:
            for items in loader.load_all(batch_size):
                parts: list[vectordb.SourcePart] = []
                for item in items:
                    if item.item_id in seen:  # a source listing an id twice keeps its first
                        continue
                    seen.add(item.item_id)
                    parts.extend(_item_source_parts(item, item_text, item_display, skipped))
                yield parts
        finally:
            loader.close()
        if skipped:
            logger.warning("%d items without text were not indexed, e.g. %s", len(skipped), skipped[:5])

    return _Source(
        name=f"loader {spec.name}",
        batches=batches,
        total_parts=None,
        skipped=skipped,
        reader=_loader_reader(store, spec, item_text, item_display),
    )


def build_item_text(store: VectorStore, params: ReindexTaskParams) -> ItemText:
    """The build's ``ItemText``: the task's, else the blue collection's (a catalog keeps being cut one way), else the
    default."""
    if params.item_text is not None:
        return params.item_text.config()
    blue = store.get_blue_collection()
    if blue is not None:
        collection = store.get_collection(blue.model_id)
        if collection is not None:
            return collection.item_text
    return ItemText()


def build_item_display(store: VectorStore, params: ReindexTaskParams) -> ItemDisplay:
    """What search shows of the build's items: the task's choice, else the blue collection's, else the default."""
    if params.item_display is not None:
        return params.item_display.config()
    blue = store.get_blue_collection()
    if blue is not None:
        collection = store.get_collection(blue.model_id)
        if collection is not None:
            return collection.item_display
    return ItemDisplay()


def choose_source(
    store: VectorStore, params: ReindexTaskParams, item_text: ItemText, item_display: ItemDisplay = ItemDisplay()
) -> _Source:
    """The explicit loader, else the source (or blue) collection when it was cut with ``item_text`` (and shows
    items with ``item_display``) too, else the configured catalog loader."""
    if params.loader is not None:
        return _loader_source(store, params.loader, item_text, item_display)
    candidates = [params.source_model_id, store.get_deployment().blue_model_id]
    for model_id in candidates:
        if model_id is None or model_id == params.dest_model_id:
            continue
        collection = store.get_collection(model_id)
        if collection is None or collection.state not in ("blue", "ready"):
            continue
        if collection.item_text == item_text and collection.item_display == item_display:
            return _collection_source(store, model_id, item_text, item_display)
        logger.info(
            "the collection of %s was cut or shown another way (item_text, item_display): reading the catalog instead",
            model_id,
        )
    settings = get_settings()
    spec = LoaderSpec(name=settings.catalog_loader, options=settings.catalog_loader_options)
    return _loader_source(store, spec, item_text, item_display)


class _CopyWriter:
    """Streams parts into one binary COPY on its own thread, so encoding the next batch overlaps the write."""

    _END = object()
    _ABORT = object()

    def __init__(
        self,
        store: VectorStore,
        table_name: str,
        replace_items: list[str] | None = None,
        before_commit: Callable[[Any], None] | None = None,
    ) -> None:
        self._store = store
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self.count = 0
        self._thread = threading.Thread(
            target=self._run, args=(table_name, replace_items or [], before_commit), name="reindex-writer", daemon=True
        )
        self._thread.start()

    def _parts(self) -> Iterator[vectordb.ItemPart]:
        while True:
            batch = self._queue.get()
            if batch is self._END:
                return
            if batch is self._ABORT:  # raised inside the COPY, so its transaction rolls back
                raise _WriteAborted
            yield from batch

    def _run(self, table_name: str, replace_items: list[str], before_commit: Callable[[Any], None] | None) -> None:
        try:
            self.count = self._store.copy_parts(table_name, self._parts(), replace_items, before_commit)
        except _WriteAborted:
            return
        except BaseException as error:  # handed to the encoding thread
            self._error = error
            while self._queue.get() not in (self._END, self._ABORT):  # unblock the producer
                pass

    def put(self, parts: list[vectordb.ItemPart]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(parts)

    def close(self) -> int:
        self._queue.put(self._END)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.count

    def abort(self) -> None:
        """Roll the COPY back (a shard's partial write must not commit) and let the thread finish."""
        if self._thread.is_alive():
            self._queue.put(self._ABORT)
            self._thread.join(timeout=60)


class _WriteAborted(Exception):
    """Ends an aborted COPY from inside its stream, so nothing of it commits."""


def build_collection(
    store: VectorStore,
    params: ReindexTaskParams,
    progress: Progress,
    should_stop: ShouldStop,
    model: Any | None = None,
    model_source: str = "model",
    task_id: str | None = None,
) -> ReindexResult:
    """Everything a reindex does once it holds the destination's lock.

    With ``task_id`` (a worker's job) a catalog (text or images) of at least
    ``EMBEDDING_STUDIO_REINDEX_SHARD_THRESHOLD`` items is embedded by shards on every reindex worker
    (``tasks.shards``); the index, catch-up and flip stay here, once.
    """
    started = time.perf_counter()
    model = model if model is not None else resolve_model(params.dest_model_id)
    existing = store.get_collection(params.dest_model_id)
    if existing is not None and existing.state == "blue":
        raise vectordb.CollectionStateError(
            f"model {params.dest_model_id!r} is already the blue model; nothing to reindex"
        )
    store.register_model(params.dest_model_id, int(model.dim), source=model_source)
    item_text = build_item_text(store, params)
    item_display = build_item_display(store, params)
    from embedding_studio.models.clip import is_image_model
    from embedding_studio.tasks.image_index import image_source

    images: dict[str, Any] | None = None  # an image model's batch of decoded images (tasks.image_index)
    if is_image_model(model):
        source, images = image_source(store, params, item_display)
    else:
        source = choose_source(store, params, item_text, item_display)
    progress(0.01, f"reading items from the {source.name}")
    collection = store.start_collection(params.dest_model_id, item_text, item_display)

    embed = item_embedder(model, params.batch_size)
    writer: _CopyWriter | None = None
    sharded: Any = None  # tasks.shards.ShardedBuild
    written = 0
    try:
        if task_id is not None and source.reader is not None:
            from embedding_studio.tasks.shards import build_by_shards

            # Lists the ids now, after the snapshot point: an item upserted before it is listed, one after is replayed.
            sharded = build_by_shards(store, task_id, params, source.reader, collection, embed, progress, should_stop)
        if sharded is None:
            writer = _CopyWriter(store, collection.table_name)
            for batch in source.batches(params.batch_size):
                if should_stop():
                    raise TaskCanceledError("canceled during the reindex")
                if not batch:
                    continue
                if images is not None:  # the batch's pictures, released once embedded: one batch of pixels held
                    vectors = embed([images.pop(part.item_id) for part in batch])
                else:
                    vectors = embed([part.content for part in batch])
                writer.put(
                    [
                        vectordb.ItemPart(part.item_id, part.part, part.content, vectors[index], part.payload)
                        for index, part in enumerate(batch)
                    ]
                )
                written += len(batch)
                if source.total_parts:
                    fraction = 0.02 + 0.88 * min(written / source.total_parts, 1.0)
                    progress(fraction, f"embedded {written} of {source.total_parts} parts")
                else:
                    progress(0.5, f"embedded {written} parts")
                if params.pause_between_batches_s:
                    time.sleep(params.pause_between_batches_s)
            written = writer.close()
        else:
            written = sharded.parts
        phase_seconds = {"embed_and_write": time.perf_counter() - started}
        progress(0.9, f"building the HNSW index over {written} parts")
        store.build_index(collection.table_name)
        phase_seconds["index"] = time.perf_counter() - started - phase_seconds["embed_and_write"]
        progress(0.95, "applying item changes that arrived during the reindex")
        last_seq = store.catch_up(params.dest_model_id, embed, collection.change_seq_start or 0)
        if should_stop():
            raise TaskCanceledError("canceled before the new collection was handed over")
        finished = store.finish_collection(params.dest_model_id, embed, last_seq, params.deploy_as_blue)
    except BaseException:
        if writer is not None:
            writer.abort()
        try:
            store.drop_collection(params.dest_model_id)
        except Exception:
            logger.exception("could not drop the unfinished collection of %s", params.dest_model_id)
        raise
    finally:
        if source.reader is not None:
            source.reader.close()
    return ReindexResult(
        model_id=params.dest_model_id,
        source=source.name + (f", {sharded.shards} shards" if sharded is not None else ""),
        item_count=finished.item_count,
        part_count=written,
        deployed_as_blue=finished.state == "blue",
        skipped_items=len(source.skipped) if sharded is None else sharded.skipped,
        shards=sharded.shards if sharded is not None else 0,
        shard_workers=dict(sharded.workers) if sharded is not None else {},
        retried_shards=sharded.retried if sharded is not None else 0,
        seconds=(seconds := time.perf_counter() - started),
        phase_seconds={**phase_seconds, "catch_up_and_flip": seconds - sum(phase_seconds.values())},
    )


def run_reindex(
    params: ReindexTaskParams,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    on_wait: Callable[[], None] | None = None,
    model: Any | None = None,
    task_id: str | None = None,
    *,
    store: VectorStore,
) -> ReindexResult:
    """Take the destination's lock (waiting or refusing), build, release. ``task_id``: the worker's task, whose
    large catalog is then embedded by shards on every reindex worker. ``store``: the vector store to build in (its
    database holds the lock)."""
    progress = progress or (lambda fraction, message: None)
    should_stop = should_stop or (lambda: False)
    lock = acquire_destination(
        store.database,
        params.dest_model_id,
        params.wait_on_conflict,
        should_stop,
        on_wait or (lambda: progress(0.0, f"waiting for another reindex into {params.dest_model_id}")),
    )
    try:
        return build_collection(store, params, progress, should_stop, model=model, task_id=task_id)
    finally:
        lock.release()


def index_catalog(
    model_id: str,
    loader: LoaderSpec | None = None,
    deploy_as_blue: bool = True,
    batch_size: int = 256,
    progress: Progress | None = None,
    *,
    store: VectorStore,
) -> ReindexResult:
    """Index a catalog with a model in this process (the first deployment: no collection exists yet) into
    ``store``; ``loader`` defaults to the configured catalog loader."""
    settings = get_settings()
    spec = loader or LoaderSpec(name=settings.catalog_loader, options=settings.catalog_loader_options)
    params = ReindexTaskParams(
        dest_model_id=model_id, deploy_as_blue=deploy_as_blue, loader=spec, batch_size=batch_size
    )
    return run_reindex(params, progress=progress, store=store)
