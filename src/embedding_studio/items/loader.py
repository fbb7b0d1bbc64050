"""The ``DataLoader`` contract: fetch items by id, stream a whole source, and say what failed.

Fine-tuning decides whether a batch is usable from the share of items that could not be loaded, so
a loader never drops an item silently: every requested id ends up either in ``LoadResult.items`` or
in ``LoadResult.failed`` with a reason (``missing``, ``unreadable``, ``error``). Transient failures
(a dropped connection, a throttled request) are retried with exponential backoff; a missing item is
not, because asking again will not make it appear.
"""

from __future__ import annotations

import gc
import inspect
import json
import logging
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, Literal, TypeVar

from embedding_studio.items.types import DownloadedItem, FailedItem, ItemMeta

logger = logging.getLogger(__name__)

FailureReason = Literal["missing", "unreadable", "error"]
MISSING: FailureReason = "missing"
UNREADABLE: FailureReason = "unreadable"
ERROR: FailureReason = "error"

T = TypeVar("T")


class LoaderError(Exception):
    """A loader is misconfigured or its source cannot be used at all (not one bad item)."""


class ItemMissingError(Exception):
    """The source answered, and the item is not there; never retried."""


class ItemUnreadableError(Exception):
    """The item's bytes are there but cannot be decoded as the loader's content type; never retried."""


class TransientLoadError(Exception):
    """A failure worth retrying (connection reset, throttling, a 5xx)."""


@dataclass
class LoadResult:
    """What one ``load`` call produced: every requested item is in exactly one of the two lists."""

    items: list[DownloadedItem] = field(default_factory=list)
    failed: list[FailedItem] = field(default_factory=list)

    @property
    def requested_count(self) -> int:
        return len(self.items) + len(self.failed)

    @property
    def failed_share(self) -> float:
        """``len(failed) / (len(items) + len(failed))``; 0 when nothing was requested."""
        total = self.requested_count
        return len(self.failed) / total if total else 0.0

    def failed_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for failure in self.failed:
            counts[failure.reason] = counts.get(failure.reason, 0) + 1
        return counts

    def extend(self, other: LoadResult) -> None:
        self.items.extend(other.items)
        self.failed.extend(other.failed)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: attempt ``n`` (1-based) waits ``min(max_delay, initial_delay * multiplier**(n-1))``
    seconds, scaled by a random factor in ``[1 - jitter, 1]`` so concurrent workers do not retry in lockstep."""

    attempts: int = 4
    initial_delay: float = 0.2
    multiplier: float = 2.0
    max_delay: float = 5.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be at least 1, got {self.attempts}")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def delay(self, failed_attempt: int) -> float:
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (failed_attempt - 1))
        return base * (1.0 - self.jitter * random.random())


def call_with_retries(
    function: Callable[[], T],
    policy: RetryPolicy,
    is_transient: Callable[[BaseException], bool],
    sleep: Callable[[float], None] = time.sleep,
    what: str = "",
) -> T:
    """Call ``function``; retry it while it raises a transient error and attempts remain.

    ``ItemMissingError``/``ItemUnreadableError`` propagate at once whatever ``is_transient`` says.
    """
    attempt = 1
    while True:
        try:
            return function()
        except (ItemMissingError, ItemUnreadableError):
            raise
        except Exception as error:
            if attempt >= policy.attempts or not is_transient(error):
                raise
            wait = policy.delay(attempt)
            logger.warning(
                "transient error on %s (attempt %d/%d), retrying in %.2fs: %s",
                what or "load",
                attempt,
                policy.attempts,
                wait,
                error,
            )
            sleep(wait)
            attempt += 1


def _retry_policy_from(retry: RetryPolicy | dict[str, Any] | None) -> RetryPolicy:
    if retry is None:
        return RetryPolicy()
    if isinstance(retry, RetryPolicy):
        return retry
    return RetryPolicy(**retry)


def unique_metas(items: Iterable[ItemMeta]) -> list[ItemMeta]:
    """The requested metas once each, in first-seen order (a set loses order, a list may repeat)."""
    return list(dict.fromkeys(items))


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while thousands of small objects are built.

    Every 700 new container objects trigger a collection, and in a process that has imported torch
    the older generations hold hundreds of thousands of objects: building 20,000 items then spends
    about half its time in collections that free nothing (the items are all kept). Reference counting
    still frees everything as usual; only cycle detection waits until the block ends.
    """
    was_enabled = gc.isenabled()
    if was_enabled:
        gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def reservoir_sample(values: Iterable[T], count: int, seed: int) -> list[T]:
    """A uniform sample of ``count`` values of a stream read once (Vitter's algorithm R), in stream order."""
    if count < 0:
        raise ValueError(f"count must be at least 0, got {count}")
    rng = random.Random(seed)
    reservoir: list[tuple[int, T]] = []
    for position, value in enumerate(values):
        if len(reservoir) < count:
            reservoir.append((position, value))
            continue
        slot = rng.randrange(position + 1)
        if slot < count:
            reservoir[slot] = (position, value)
    return [value for _, value in sorted(reservoir, key=lambda pair: pair[0])]


def chunked(values: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class DataLoader(ABC):
    """Fetches items from one source.

    ``load`` takes the items a batch needs; ``load_all`` streams the whole source (reindexing). The
    failures of the latest ``load_all`` are kept in ``load_all_failed`` (and passed to ``on_failed``
    as they happen), because a generator has no return value the caller sees.
    """

    #: what ``DownloadedItem.data`` holds: ``text`` (str), ``json`` (dict or any JSON value), ``image`` (PIL)
    content_type: str = "text"

    def __init__(self, retry: RetryPolicy | dict[str, Any] | None = None, source: str = "default") -> None:
        self.retry_policy = _retry_policy_from(retry)
        #: the ``ItemMeta.source`` of the items ``load_all`` yields
        self.source = source
        self.load_all_failed: list[FailedItem] = []
        self._sleep: Callable[[float], None] = time.sleep

    @abstractmethod
    def load(self, items: Iterable[ItemMeta]) -> LoadResult:
        """Fetch the given items; each one ends up in ``items`` or ``failed`` (once, however often it was
        asked for). The order of ``items`` is the source's, not necessarily the request's."""

    @abstractmethod
    def load_all(
        self, batch_size: int = 1000, on_failed: Callable[[list[FailedItem]], None] | None = None
    ) -> Iterator[list[DownloadedItem]]:
        """Stream every item of the source in batches of at most ``batch_size``."""

    def sample(self, count: int, seed: int = 0, exclude: Container[str] = ()) -> list[DownloadedItem]:
        """About ``count`` items drawn uniformly from the source, none of whose ids is in ``exclude``.

        Fine-tuning validates on search over the shown items plus such a sample (the distractors search has to
        beat). This default streams the whole source through ``load_all``; sources that can list their ids
        without reading the items (object stores, the JSONL catalog) override it to read only the sample.
        """

        def candidates() -> Iterator[DownloadedItem]:
            for page in self.load_all():
                yield from (item for item in page if item.meta.item_id not in exclude)

        return reservoir_sample(candidates(), count, seed)

    def item_metas(self) -> Iterator[ItemMeta]:
        """Every item of the source as the meta ``load`` takes back: how a sharded reindex (``tasks.shards``) cuts
        the catalog into slices of ids that workers load apart. This default reads the whole source once through
        ``load_all``; sources that can list ids without reading items (object stores, the JSONL catalog) override it."""
        for page in self.load_all():
            yield from (item.meta for item in page)

    def is_transient(self, error: BaseException) -> bool:
        """Whether ``error`` is worth retrying; sources override this with their own error types."""
        return isinstance(error, TransientLoadError | ConnectionError | TimeoutError)

    def _with_retries(self, function: Callable[[], T], what: str = "") -> T:
        return call_with_retries(function, self.retry_policy, self.is_transient, sleep=self._sleep, what=what)

    def _report_load_all_failures(
        self, failed: list[FailedItem], on_failed: Callable[[list[FailedItem]], None] | None
    ) -> None:
        if not failed:
            return
        self.load_all_failed.extend(failed)
        if on_failed is not None:
            on_failed(failed)

    def close(self) -> None:
        """Release connections and threads; the loader may not be used afterwards."""
        return None


# --- decoding bytes into content ---------------------------------------------------------------------------


def decode_text(raw: bytes, fallback_encoding: str | None = None) -> tuple[str, dict[str, Any]]:
    """UTF-8 text; with ``fallback_encoding`` bytes that are not UTF-8 are decoded with it and the item's
    ``extra["decoded_with"]`` says so, otherwise they are unreadable. An empty file is an empty text: the
    item exists and is loaded (``extra["empty"] = True``) so callers can count or skip it."""
    extra: dict[str, Any] = {}
    if not raw:
        extra["empty"] = True
        return "", extra
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        if fallback_encoding is None:
            raise ItemUnreadableError(f"not valid UTF-8 text ({error})") from error
        try:
            text = raw.decode(fallback_encoding)
        except (UnicodeDecodeError, LookupError) as fallback_error:
            raise ItemUnreadableError(f"not valid UTF-8 or {fallback_encoding} text ({fallback_error})") from error
        extra["decoded_with"] = fallback_encoding
        logger.warning("item decoded with fallback encoding %s", fallback_encoding)
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, extra


def decode_json(raw: bytes) -> tuple[Any, dict[str, Any]]:
    if not raw.strip():
        raise ItemUnreadableError("empty file, expected a JSON document")
    try:
        return json.loads(raw.decode("utf-8-sig")), {}
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ItemUnreadableError(f"not a valid UTF-8 JSON document ({error})") from error


def decode_image(raw: bytes) -> tuple[Any, dict[str, Any]]:
    """A fully decoded RGB PIL image (``Image.open`` is lazy; ``load`` makes a truncated file fail here)."""
    from PIL import Image, UnidentifiedImageError

    if not raw:
        raise ItemUnreadableError("empty file, expected an image")
    try:
        with Image.open(BytesIO(raw)) as image:
            image.load()
            image_format = image.format
            converted = image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ItemUnreadableError(f"not a readable image ({error})") from error
    return converted, {"format": image_format}


ContentType = Literal["text", "json", "image"]


class BytesDecoder:
    """Turns an object's bytes into the loader's content type."""

    def __init__(self, content_type: ContentType, fallback_encoding: str | None = None) -> None:
        if content_type not in ("text", "json", "image"):
            raise LoaderError(f"unknown content type {content_type!r}; expected text, json or image")
        self.content_type = content_type
        self.fallback_encoding = fallback_encoding

    def __call__(self, raw: bytes) -> tuple[Any, dict[str, Any]]:
        if self.content_type == "text":
            return decode_text(raw, self.fallback_encoding)
        if self.content_type == "json":
            return decode_json(raw)
        return decode_image(raw)


class ObjectStoreLoader(DataLoader):
    """A source of independent objects (files, S3/GCS objects): fetched concurrently by a thread pool,
    one object per request, each with its own retries, so a slow or missing object delays no other."""

    def __init__(
        self,
        content_type: ContentType = "text",
        extension: str = "",
        max_workers: int = 16,
        fallback_encoding: str | None = None,
        retry: RetryPolicy | dict[str, Any] | None = None,
        source: str = "default",
    ) -> None:
        super().__init__(retry=retry, source=source)
        if max_workers < 1:
            raise LoaderError(f"max_workers must be at least 1, got {max_workers}")
        self.content_type = content_type
        self.decoder = BytesDecoder(content_type, fallback_encoding)
        self.extension = extension
        self.max_workers = max_workers
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    def __init_subclass__(
        cls, content_type: ContentType | None = None, extension: str | None = None, **kwargs: Any
    ) -> None:
        """``class AwsS3JsonLoader(AwsS3Loader, content_type="json")`` is its parent with the content type
        fixed (and, given ``extension``, another default extension), so the text, json and image loaders of
        every store share one constructor instead of three hand-written copies per store.

        The constructor's signature is the parent's less ``content_type``: the registry reads it to name a
        wrong or missing option. Only the source (``bucket``, ``root``) and a given ``extension`` may be
        passed positionally, the rest by keyword.
        """
        super().__init_subclass__(**kwargs)
        if content_type is None:
            if extension is not None:
                raise TypeError(f"{cls.__name__}: a default extension is given only with a fixed content_type")
            return
        if content_type not in ("text", "json", "image"):
            raise LoaderError(f"unknown content type {content_type!r}; expected text, json or image")
        parent_init = cls.__mro__[1].__init__
        parent_signature = inspect.signature(parent_init)
        parameters: list[inspect.Parameter] = []
        keyword_only = False
        for position, parameter in enumerate(parent_signature.parameters.values()):
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise TypeError(f"{cls.__name__}: the parent constructor must name its options (no *args/**kwargs)")
            if parameter.name == "content_type":
                continue
            if parameter.name == "extension" and extension is not None:
                parameter = parameter.replace(default=extension)
            elif position > 1:  # after self and the source
                keyword_only = True
            if keyword_only:
                parameter = parameter.replace(kind=parameter.KEYWORD_ONLY)
            parameters.append(parameter)
        signature = parent_signature.replace(parameters=parameters)
        self_name = parameters[0].name

        def __init__(self: ObjectStoreLoader, *args: Any, **options: Any) -> None:
            arguments = signature.bind(self, *args, **options).arguments
            del arguments[self_name]
            if extension is not None:
                arguments.setdefault("extension", extension)
            parent_init(self, content_type=content_type, **arguments)

        __init__.__signature__ = signature  # type: ignore[attr-defined]
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        __init__.__module__ = cls.__module__
        cls.__init__ = __init__  # type: ignore[method-assign]
        cls.fixed_options = ("content_type",)

    # -- what a concrete store provides --
    @abstractmethod
    def fetch_bytes(self, key: str) -> bytes:
        """The object's bytes; ``ItemMissingError`` when it does not exist."""

    @abstractmethod
    def iter_keys(self) -> Iterator[str]:
        """Every object key of the source that holds an item (for ``load_all``)."""

    @abstractmethod
    def describe(self) -> str:
        """Where the source is, for error messages."""

    # -- ids and keys --
    def key_for(self, meta: ItemMeta) -> str:
        if meta.location:
            return meta.location
        if self.extension and not meta.item_id.endswith(self.extension):
            return meta.item_id + self.extension
        return meta.item_id

    def item_id_for_key(self, key: str) -> str:
        if self.extension and key.endswith(self.extension):
            return key[: -len(self.extension)]
        return key

    # -- loading --
    def _executor_pool(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.max_workers, thread_name_prefix=type(self).__name__
                )
            return self._executor

    def _load_one(self, meta: ItemMeta) -> DownloadedItem | FailedItem:
        key = self.key_for(meta)
        try:
            raw = self._with_retries(lambda: self.fetch_bytes(key), what=f"{self.describe()}/{key}")
        except ItemMissingError as error:
            return FailedItem(meta, MISSING, str(error) or f"{key} not found in {self.describe()}")
        except ItemUnreadableError as error:
            return FailedItem(meta, UNREADABLE, str(error))
        except LoaderError:
            raise  # the source itself is unusable (no such bucket): one clear error, not one per item
        except Exception as error:  # noqa: BLE001 - reported per item, never dropped
            return FailedItem(meta, ERROR, f"{type(error).__name__}: {error}")
        try:
            data, extra = self.decoder(raw)
        except ItemUnreadableError as error:
            return FailedItem(meta, UNREADABLE, f"{key}: {error}")
        return DownloadedItem(meta=meta, data=data, extra=extra)

    def load(self, items: Iterable[ItemMeta]) -> LoadResult:
        metas = unique_metas(items)
        result = LoadResult()
        if not metas:
            return result
        if len(metas) == 1 or self.max_workers == 1:
            outcomes = [self._load_one(meta) for meta in metas]
        else:
            outcomes = list(self._executor_pool().map(self._load_one, metas))
        for outcome in outcomes:
            if isinstance(outcome, DownloadedItem):
                result.items.append(outcome)
            else:
                result.failed.append(outcome)
        return result

    def load_all(
        self, batch_size: int = 1000, on_failed: Callable[[list[FailedItem]], None] | None = None
    ) -> Iterator[list[DownloadedItem]]:
        if batch_size < 1:
            raise LoaderError(f"batch_size must be at least 1, got {batch_size}")
        self.load_all_failed = []
        page: list[ItemMeta] = []
        for key in self.iter_keys():
            page.append(self.meta_for_key(key))
            if len(page) >= batch_size:
                yield from self._load_page(page, on_failed)
                page = []
        if page:
            yield from self._load_page(page, on_failed)

    def sample(self, count: int, seed: int = 0, exclude: Container[str] = ()) -> list[DownloadedItem]:
        """Lists the keys (no object is read), samples them, and reads only the sampled objects."""
        metas = (self.meta_for_key(key) for key in self.iter_keys())
        chosen = reservoir_sample((meta for meta in metas if meta.item_id not in exclude), count, seed)
        return list(self.load(chosen).items)

    def item_metas(self) -> Iterator[ItemMeta]:
        """Lists the keys; no object is read."""
        return (self.meta_for_key(key) for key in self.iter_keys())

    def load_keys(self, keys: Sequence[str]) -> dict[str, DownloadedItem | FailedItem]:
        """Each key (an image upsert names its image so, as search returns it in ``payload.image``) read by the
        pool, or why not; every image loader answers this, whatever its keys are (``pgsql_image``: a column's URL)."""
        metas = {key: self.meta_for_key(key) for key in dict.fromkeys(keys)}
        result = self.load(metas.values())
        outcomes: dict[ItemMeta, DownloadedItem | FailedItem] = {
            outcome.meta: outcome for outcome in (*result.items, *result.failed)
        }
        return {key: outcomes[meta] for key, meta in metas.items()}

    def meta_for_key(self, key: str) -> ItemMeta:
        """The meta ``load_all`` yields for a key: the location is kept only when the id does not lead back to it."""
        item_id = self.item_id_for_key(key)
        location = "" if self.key_for(ItemMeta(item_id)) == key else key
        return ItemMeta(item_id=item_id, source=self.source, location=location)

    def _load_page(
        self, page: list[ItemMeta], on_failed: Callable[[list[FailedItem]], None] | None
    ) -> Iterator[list[DownloadedItem]]:
        result = self.load(page)
        self._report_load_all_failures(result.failed, on_failed)
        if result.items:
            yield result.items

    def close(self) -> None:
        with self._executor_lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
