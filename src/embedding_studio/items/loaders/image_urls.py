"""Images named by URL (``s3://bucket/key``, ``gs://bucket/key``, a file path), read through the image loaders.

A catalog that keeps its images' addresses in a database column (``pgsql_image``) names images in several stores
at once. Rather than a second way to talk to S3, GCS or the disk, each URL is mapped to the registered image loader
of its store (:func:`image_loader_for_url`), one loader per bucket, so retries, error reasons and the thread pool
that downloads and decodes are the ones ``s3_image``, ``gcs_image`` and ``local_image`` already have.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedding_studio.items.loader import UNREADABLE, LoaderError, ObjectStoreLoader
from embedding_studio.items.types import DownloadedItem, FailedItem, ItemMeta

#: URL schemes and the registered image loader that reads them
SCHEMES: dict[str, str] = {"s3": "s3_image", "gs": "gcs_image", "file": "local_image"}


class ImageUrlError(ValueError):
    """A value that names no image this module can read (a relative path, an unknown scheme, no bucket)."""


@dataclass(frozen=True)
class ImageLocation:
    """Where one image lives: the registered loader name, the store within it (a bucket, or ``/``) and its key."""

    loader: str
    store: str
    key: str


def parse_image_url(url: str, base_url: str = "") -> ImageLocation:
    """``url`` as a location; a value with neither a scheme nor a leading ``/`` is a key under ``base_url``.

    ``s3://photos/catalog/1.jpg`` is key ``catalog/1.jpg`` of bucket ``photos``; ``/srv/img/1.png`` and
    ``file:///srv/img/1.png`` are the file; ``shoes/1.jpg`` with ``base_url="s3://photos/catalog/"`` is
    ``s3://photos/catalog/shoes/1.jpg``. Raises :class:`ImageUrlError` for anything else, so the caller reports
    that item as unreadable with the reason instead of guessing where it is.
    """
    value = url.strip()
    if not value:
        raise ImageUrlError("empty image URL")
    scheme, separator, rest = value.partition("://")
    if not separator and not value.startswith("/"):
        if not base_url:
            raise ImageUrlError(
                f"{value!r} is neither a URL (s3://, gs://, file://) nor an absolute path, and no base_url is set"
            )
        return parse_image_url(base_url + value)
    if not separator:
        scheme, rest = "file", value
    elif scheme not in SCHEMES:
        raise ImageUrlError(f"{value!r}: unknown URL scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    if scheme == "file":
        path = rest if rest.startswith("/") else "/" + rest
        return ImageLocation("local_image", "/", Path(path).as_posix().lstrip("/"))
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise ImageUrlError(f"{value!r} names no object (expected {scheme}://bucket/key)")
    return ImageLocation(SCHEMES[scheme], bucket, key)


def image_url_of(location: ImageLocation) -> str:
    """The canonical URL of a location (a file as its absolute path), as search shows it in ``image_url``."""
    if location.loader == "local_image":
        return "/" + location.key
    scheme = next(scheme for scheme, name in SCHEMES.items() if name == location.loader)
    return f"{scheme}://{location.store}/{location.key}"


def image_loader_for_url(
    location: ImageLocation, s3: dict[str, Any] | None = None, gcs: dict[str, Any] | None = None, max_workers: int = 8
) -> ObjectStoreLoader:
    """The registered image loader that reads ``location``'s store: ``s3_image``/``gcs_image`` of its bucket with the
    store's options (endpoint, credentials), ``local_image`` rooted at ``/``; keys are read as given (no prefix, no
    extension)."""
    from embedding_studio.items.registry import create_loader

    options: dict[str, Any] = {"extension": "", "max_workers": max_workers}
    if location.loader == "local_image":
        options["root"] = "/"
    else:
        options.update((s3 if location.loader == "s3_image" else gcs) or {})
        options["bucket"] = location.store
    loader = create_loader(location.loader, **options)
    if not isinstance(loader, ObjectStoreLoader):  # the registry maps these names to object-store loaders
        raise LoaderError(f"{location.loader!r} is not an object-store image loader")
    return loader


class ImageUrlReader:
    """Reads images by URL, each store through its image loader (built on first use, one per bucket), each store's
    images fetched and decoded together by that loader's thread pool."""

    def __init__(
        self,
        base_url: str = "",
        s3: dict[str, Any] | None = None,
        gcs: dict[str, Any] | None = None,
        max_workers: int = 8,
    ) -> None:
        self.base_url = base_url
        self.s3 = dict(s3 or {})
        self.gcs = dict(gcs or {})
        self.max_workers = max_workers
        self._loaders: dict[tuple[str, str], ObjectStoreLoader] = {}

    def url_for(self, value: str) -> str:
        """The full URL a column value (a URL, a path, or a key under ``base_url``) names; the value itself when it
        names nothing readable (the read reports why)."""
        try:
            return image_url_of(parse_image_url(value, self.base_url))
        except ImageUrlError:
            return value

    def _loader(self, location: ImageLocation) -> ObjectStoreLoader:
        store = (location.loader, location.store)
        if store not in self._loaders:
            self._loaders[store] = image_loader_for_url(location, self.s3, self.gcs, self.max_workers)
        return self._loaders[store]

    def read(self, requests: Iterable[tuple[ItemMeta, str]]) -> tuple[list[DownloadedItem], list[FailedItem]]:
        """Each ``(meta, url)`` as an image item of that meta (``extra``: the image's format), or a failed item with
        the reason: unreadable for a URL that names nothing, else the store loader's own reason (missing, not an
        image, an error after retries)."""
        loaded: list[DownloadedItem] = []
        failed: list[FailedItem] = []
        by_store: dict[tuple[str, str], list[tuple[ItemMeta, str]]] = {}
        for meta, url in requests:
            try:
                location = parse_image_url(url, self.base_url)
            except ImageUrlError as error:
                failed.append(FailedItem(meta, UNREADABLE, str(error)))
                continue
            by_store.setdefault((location.loader, location.store), []).append((meta, location.key))
        for (name, store), wanted in by_store.items():
            loader = self._loader(ImageLocation(name, store, ""))
            keyed = {key: ItemMeta(item_id=key, location=key) for key in dict.fromkeys(key for _, key in wanted)}
            result = loader.load(keyed.values())
            outcomes: dict[str, DownloadedItem | FailedItem] = {
                outcome.meta.item_id: outcome for outcome in (*result.items, *result.failed)
            }
            for meta, key in wanted:
                outcome = outcomes[key]
                if isinstance(outcome, DownloadedItem):
                    loaded.append(DownloadedItem(meta, outcome.data, dict(outcome.extra)))
                else:
                    failed.append(FailedItem(meta, outcome.reason, outcome.detail))
        return loaded, failed

    def close(self) -> None:
        for loader in self._loaders.values():
            loader.close()
        self._loaders.clear()
