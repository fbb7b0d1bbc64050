"""Items stored as objects in a Google Cloud Storage bucket (or the GCS emulator).

Objects are fetched by a thread pool, one GET each; every worker thread has its own client (the
library's HTTP session is not documented as thread-safe). The library's own retries are turned off
so the loader's backoff policy is the only one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from embedding_studio.items.loader import (
    ContentType,
    ItemMissingError,
    LoaderError,
    ObjectStoreLoader,
    RetryPolicy,
)
from embedding_studio.items.types import ItemMeta


class GCPLoader(ObjectStoreLoader):
    """Objects ``<prefix><item_id><extension>`` (or ``<prefix><location>``) of ``bucket``.

    ``api_endpoint`` points at an emulator or a private endpoint (``STORAGE_EMULATOR_HOST`` works
    too); ``anonymous=True`` uses anonymous credentials (emulators, public buckets); otherwise
    ``credentials_path`` names a service-account JSON file, or Application Default Credentials apply.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        content_type: ContentType = "text",
        extension: str = "",
        project: str | None = None,
        api_endpoint: str | None = None,
        anonymous: bool = False,
        credentials_path: str | None = None,
        max_workers: int = 16,
        timeout_s: float = 30.0,
        fallback_encoding: str | None = None,
        retry: RetryPolicy | dict[str, Any] | None = None,
        source: str = "default",
    ) -> None:
        super().__init__(
            content_type=content_type,
            extension=extension,
            max_workers=max_workers,
            fallback_encoding=fallback_encoding,
            retry=retry,
            source=source,
        )
        if not bucket:
            raise LoaderError("GCS loader needs a bucket name")
        self.bucket = bucket
        self.prefix = prefix
        self.project = project
        self.api_endpoint = api_endpoint
        self.anonymous = anonymous
        self.credentials_path = credentials_path
        self.timeout_s = timeout_s
        self._local = threading.local()

    def describe(self) -> str:
        where = f" at {self.api_endpoint}" if self.api_endpoint else ""
        return f"gs://{self.bucket}/{self.prefix}{where}"

    def _new_client(self) -> Any:
        from google.cloud import storage

        options: dict[str, Any] = {}
        if self.api_endpoint:
            options["client_options"] = {"api_endpoint": self.api_endpoint}
        if self.anonymous:
            from google.auth.credentials import AnonymousCredentials

            return storage.Client(project=self.project or "anonymous", credentials=AnonymousCredentials(), **options)
        if self.credentials_path:
            return storage.Client.from_service_account_json(self.credentials_path, project=self.project, **options)
        return storage.Client(project=self.project, **options)

    @property
    def client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._new_client()
            self._local.client = client
        return client

    def key_for(self, meta: ItemMeta) -> str:
        return self.prefix + super().key_for(meta)

    def item_id_for_key(self, key: str) -> str:
        return super().item_id_for_key(key[len(self.prefix) :] if key.startswith(self.prefix) else key)

    def meta_for_key(self, key: str) -> ItemMeta:
        item_id = self.item_id_for_key(key)
        location = "" if self.key_for(ItemMeta(item_id)) == key else key[len(self.prefix) :]
        return ItemMeta(item_id=item_id, source=self.source, location=location)

    def fetch_bytes(self, key: str) -> bytes:
        from google.api_core.exceptions import NotFound

        blob = self.client.bucket(self.bucket).blob(key)
        try:
            return blob.download_as_bytes(retry=None, timeout=self.timeout_s)
        except NotFound as error:
            if "bucket" in str(error).lower() and not self.client.bucket(self.bucket).exists(retry=None):
                raise LoaderError(f"bucket {self.bucket!r} does not exist{self._at()}") from error
            raise ItemMissingError(f"gs://{self.bucket}/{key} does not exist") from error

    def _at(self) -> str:
        return f" at {self.api_endpoint}" if self.api_endpoint else ""

    def is_transient(self, error: BaseException) -> bool:
        import requests
        from google.api_core import exceptions

        transient = (
            exceptions.TooManyRequests,
            exceptions.InternalServerError,
            exceptions.BadGateway,
            exceptions.ServiceUnavailable,
            exceptions.GatewayTimeout,
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
        )
        return isinstance(error, transient) or super().is_transient(error)

    def iter_keys(self) -> Iterator[str]:
        from google.api_core.exceptions import NotFound

        try:
            for blob in self.client.list_blobs(self.bucket, prefix=self.prefix or None, retry=None):
                key = blob.name
                if key.endswith("/") or (self.extension and not key.endswith(self.extension)):
                    continue
                yield key
        except NotFound as error:
            raise LoaderError(f"bucket {self.bucket!r} does not exist{self._at()}") from error


class GCPTextLoader(GCPLoader, content_type="text"):
    """GCS objects decoded as text (UTF-8, else the fallback encoding)."""


class GCPJsonLoader(GCPLoader, content_type="json"):
    """GCS objects parsed as JSON."""


class GCPImageLoader(GCPLoader, content_type="image"):
    """GCS objects opened as PIL images."""
