from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from embedding_studio.items import ItemMeta, create_loader
from embedding_studio.items.loaders.gcs import GCPImageLoader, GCPJsonLoader, GCPTextLoader

pytestmark = pytest.mark.integration


def upload(client, bucket: str, key: str, data: bytes) -> None:
    client.bucket(bucket).blob(key).upload_from_string(data)


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (5, 3), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_gcs_text_loader_reports_missing_empty_and_non_utf8(gcs_endpoint: str, gcs_bucket) -> None:
    bucket, client = gcs_bucket
    upload(client, bucket, "t/a.txt", "alpha \u00e9".encode())
    upload(client, bucket, "t/empty.txt", b"")
    upload(client, bucket, "t/bad.txt", b"\xff\xfe\xfa not utf-8")
    loader = GCPTextLoader(bucket, prefix="t/", extension=".txt", api_endpoint=gcs_endpoint, anonymous=True)
    result = loader.load([ItemMeta("a"), ItemMeta("empty"), ItemMeta("bad"), ItemMeta("gone")])
    assert {item.item_id: item.data for item in result.items} == {"a": "alpha \u00e9", "empty": ""}
    assert {(f.meta.item_id, f.reason) for f in result.failed} == {("bad", "unreadable"), ("gone", "missing")}


def test_gcs_load_all_and_registry(gcs_endpoint: str, gcs_bucket) -> None:
    bucket, client = gcs_bucket
    for index in range(7):
        upload(client, bucket, f"docs/{index}.txt", f"doc {index}".encode())
    loader = create_loader(
        "gcs_text",
        bucket=bucket,
        prefix="docs/",
        extension=".txt",
        api_endpoint=gcs_endpoint,
        anonymous=True,
        max_workers=3,
    )
    batches = list(loader.load_all(batch_size=3))
    assert [len(batch) for batch in batches] == [3, 3, 1]
    assert {item.item_id for batch in batches for item in batch} == {str(index) for index in range(7)}
    loader.close()


def test_gcs_json_and_image_loaders(gcs_endpoint: str, gcs_bucket) -> None:
    bucket, client = gcs_bucket
    upload(client, bucket, "x.json", json.dumps({"text": "body"}).encode())
    upload(client, bucket, "y.json", b"")
    upload(client, bucket, "ok.png", png_bytes())
    upload(client, bucket, "corrupt.png", b"GIF89a not really")
    result = GCPJsonLoader(bucket, extension=".json", api_endpoint=gcs_endpoint, anonymous=True).load(
        [ItemMeta("x"), ItemMeta("y")]
    )
    assert result.items[0].data == {"text": "body"} and result.failed[0].reason == "unreadable"
    result = GCPImageLoader(bucket, extension=".png", api_endpoint=gcs_endpoint, anonymous=True).load(
        [ItemMeta("ok"), ItemMeta("corrupt")]
    )
    assert result.items[0].data.size == (5, 3)
    assert result.failed[0].meta.item_id == "corrupt" and result.failed[0].reason == "unreadable"
