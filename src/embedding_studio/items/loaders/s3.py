"""Items stored as objects in an S3 bucket (AWS or any S3-compatible server: MinIO, moto, Ceph).

Objects are fetched by a thread pool, one GET each, over one shared boto3 client (clients are
thread-safe) whose connection pool is as large as the thread pool. boto3's own retries are turned
off so the loader's backoff policy is the only one and a missing object costs one request.
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

_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
_TRANSIENT_CODES = {
    "500",
    "502",
    "503",
    "504",
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
}


class AwsS3Loader(ObjectStoreLoader):
    """Objects ``<prefix><item_id><extension>`` (or ``<prefix><location>``) of ``bucket``.

    ``endpoint_url`` points at an S3-compatible server; credentials come from the options, else from
    boto3's usual chain (environment, profile, instance role); ``anonymous=True`` sends unsigned
    requests (public buckets).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        content_type: ContentType = "text",
        extension: str = "",
        endpoint_url: str | None = None,
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        anonymous: bool = False,
        max_workers: int = 32,
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
            raise LoaderError("S3 loader needs a bucket name")
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.region_name = region_name
        self._credentials = {
            "aws_access_key_id": aws_access_key_id,
            "aws_secret_access_key": aws_secret_access_key,
            "aws_session_token": aws_session_token,
        }
        self.anonymous = anonymous
        self.timeout_s = timeout_s
        self._client: Any = None
        self._client_lock = threading.Lock()

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                import boto3
                from botocore import UNSIGNED
                from botocore.config import Config

                config = Config(
                    max_pool_connections=max(10, self.max_workers),
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    connect_timeout=self.timeout_s,
                    read_timeout=self.timeout_s,
                    signature_version=UNSIGNED if self.anonymous else None,
                )
                session = boto3.session.Session()
                credentials = {} if self.anonymous else {k: v for k, v in self._credentials.items() if v}
                self._client = session.client(
                    "s3", endpoint_url=self.endpoint_url, region_name=self.region_name, config=config, **credentials
                )
            return self._client

    def key_for(self, meta: Any) -> str:
        return self.prefix + super().key_for(meta)

    def item_id_for_key(self, key: str) -> str:
        return super().item_id_for_key(key[len(self.prefix) :] if key.startswith(self.prefix) else key)

    def meta_for_key(self, key: str) -> Any:
        from embedding_studio.items.types import ItemMeta

        item_id = self.item_id_for_key(key)
        location = "" if self.key_for(ItemMeta(item_id)) == key else key[len(self.prefix) :]
        return ItemMeta(item_id=item_id, source=self.source, location=location)

    def fetch_bytes(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            return response["Body"].read()
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES:
                raise ItemMissingError(f"s3://{self.bucket}/{key} does not exist") from error
            if code == "NoSuchBucket":
                raise LoaderError(f"bucket {self.bucket!r} does not exist{self._at()}") from error
            raise

    def _at(self) -> str:
        return f" at {self.endpoint_url}" if self.endpoint_url else ""

    def is_transient(self, error: BaseException) -> bool:
        from botocore.exceptions import ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            return code in _TRANSIENT_CODES or status in _TRANSIENT_CODES
        return isinstance(error, BotoConnectionError | HTTPClientError) or super().is_transient(error)

    def iter_keys(self) -> Iterator[str]:
        from botocore.exceptions import ClientError

        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for entry in page.get("Contents", []):
                    key = entry["Key"]
                    if key.endswith("/") or (self.extension and not key.endswith(self.extension)):
                        continue
                    yield key
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code", "")) == "NoSuchBucket":
                raise LoaderError(f"bucket {self.bucket!r} does not exist{self._at()}") from error
            raise

    def close(self) -> None:
        super().close()
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None


class AwsS3TextLoader(AwsS3Loader, content_type="text"):
    """S3 objects decoded as text (UTF-8, else the fallback encoding)."""


class AwsS3JsonLoader(AwsS3Loader, content_type="json"):
    """S3 objects parsed as JSON."""


class AwsS3ImageLoader(AwsS3Loader, content_type="image"):
    """S3 objects opened as PIL images."""
