from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from embedding_studio.items import ItemMeta, LoaderError, create_loader
from embedding_studio.items.loaders.s3 import AwsS3ImageLoader, AwsS3JsonLoader, AwsS3TextLoader

S3_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}

pytestmark = pytest.mark.integration


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (0, 128, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_s3_text_loader_reports_missing_empty_and_non_utf8(s3_endpoint: str, s3_bucket) -> None:
    bucket, client = s3_bucket
    client.put_object(Bucket=bucket, Key="docs/a.txt", Body=b"alpha")
    client.put_object(Bucket=bucket, Key="docs/empty.txt", Body=b"")
    client.put_object(Bucket=bucket, Key="docs/latin.txt", Body="caf\u00e9".encode("latin-1"))
    loader = AwsS3TextLoader(bucket, prefix="docs/", extension=".txt", endpoint_url=s3_endpoint, **S3_CREDENTIALS)
    result = loader.load([ItemMeta("a"), ItemMeta("empty"), ItemMeta("latin"), ItemMeta("gone")])
    assert {item.item_id: item.data for item in result.items} == {"a": "alpha", "empty": ""}
    assert {(f.meta.item_id, f.reason) for f in result.failed} == {("latin", "unreadable"), ("gone", "missing")}
    loader.close()


def test_s3_load_all_pages_through_the_bucket(s3_endpoint: str, s3_bucket) -> None:
    bucket, client = s3_bucket
    for index in range(25):
        client.put_object(Bucket=bucket, Key=f"p/{index:03d}.txt", Body=f"text {index}".encode())
    client.put_object(Bucket=bucket, Key="p/other.bin", Body=b"skip")
    loader = create_loader(
        "s3_text",
        bucket=bucket,
        prefix="p/",
        extension=".txt",
        endpoint_url=s3_endpoint,
        max_workers=4,
        **S3_CREDENTIALS,
    )
    batches = list(loader.load_all(batch_size=10))
    assert [len(batch) for batch in batches] == [10, 10, 5]
    items = {item.item_id: item.data for batch in batches for item in batch}
    assert items["007"] == "text 7" and len(items) == 25
    assert loader.load_all_failed == []
    # what load_all yields can be loaded again by id
    assert loader.load([batches[0][0].meta]).items[0].data == batches[0][0].data


def test_s3_json_and_image_loaders(s3_endpoint: str, s3_bucket) -> None:
    bucket, client = s3_bucket
    client.put_object(Bucket=bucket, Key="1.json", Body=json.dumps({"title": "T"}).encode())
    client.put_object(Bucket=bucket, Key="bad.json", Body=b"{oops")
    client.put_object(Bucket=bucket, Key="ok.png", Body=png_bytes())
    client.put_object(Bucket=bucket, Key="broken.png", Body=png_bytes()[:30])
    json_loader = AwsS3JsonLoader(bucket, extension=".json", endpoint_url=s3_endpoint, **S3_CREDENTIALS)
    result = json_loader.load([ItemMeta("1"), ItemMeta("bad")])
    assert result.items[0].data == {"title": "T"} and result.failed[0].reason == "unreadable"
    image_loader = AwsS3ImageLoader(bucket, extension=".png", endpoint_url=s3_endpoint, **S3_CREDENTIALS)
    result = image_loader.load([ItemMeta("ok"), ItemMeta("broken"), ItemMeta("absent")])
    assert result.items[0].data.size == (4, 4)
    assert {(f.meta.item_id, f.reason) for f in result.failed} == {("broken", "unreadable"), ("absent", "missing")}


def test_s3_many_items_through_the_thread_pool(s3_endpoint: str, s3_bucket) -> None:
    bucket, client = s3_bucket
    for index in range(60):
        client.put_object(Bucket=bucket, Key=f"{index}", Body=f"{index}".encode())
    loader = AwsS3TextLoader(bucket, endpoint_url=s3_endpoint, max_workers=8, **S3_CREDENTIALS)
    result = loader.load(ItemMeta(str(index)) for index in range(70))
    assert sorted(int(item.data) for item in result.items) == list(range(60))
    assert sorted(int(f.meta.item_id) for f in result.failed) == list(range(60, 70))


def test_s3_anonymous_access_and_missing_bucket(s3_endpoint: str, s3_bucket) -> None:
    bucket, client = s3_bucket
    client.put_object(Bucket=bucket, Key="public.txt", Body=b"open", ACL="public-read")
    anonymous = AwsS3TextLoader(bucket, endpoint_url=s3_endpoint, anonymous=True, region_name="us-east-1")
    assert anonymous.load([ItemMeta("public.txt")]).items[0].data == "open"
    no_bucket = AwsS3TextLoader("no-such-bucket-here", endpoint_url=s3_endpoint, **S3_CREDENTIALS)
    with pytest.raises(LoaderError, match="no-such-bucket-here"):
        no_bucket.load([ItemMeta("x")])
    with pytest.raises(LoaderError, match="no-such-bucket-here"):
        list(no_bucket.load_all(10))


def test_s3_unreachable_endpoint_is_an_error_per_item_after_retries() -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loader = AwsS3TextLoader(
        "bucket",
        endpoint_url=f"http://127.0.0.1:{port}",
        timeout_s=1,
        retry={"attempts": 2, "initial_delay": 0.01},
        **S3_CREDENTIALS,
    )
    result = loader.load([ItemMeta("a"), ItemMeta("b")])
    assert result.items == [] and {f.reason for f in result.failed} == {"error"}
    assert "connect" in result.failed[0].detail.lower()
