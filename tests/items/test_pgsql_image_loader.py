# ruff: noqa: F401, F811  (the object-store fixtures are imported from tests/items/conftest.py)
"""``pgsql_image``: item ids and image addresses in a PostgreSQL table, the pictures in moto's S3 server and in local
files, read through the image loaders; every image that cannot be read is a failed item with its reason."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from tests.finetuning.toy_images import draw, png_bytes
from tests.items.conftest import S3_CREDENTIALS, s3_bucket, s3_endpoint

from embedding_studio.db import libpq_url
from embedding_studio.items import ItemMeta, create_loader
from embedding_studio.items.loaders.image_urls import ImageUrlError, parse_image_url
from embedding_studio.items.registry import reads_images
from embedding_studio.vectordb import VectorStore

pytestmark = pytest.mark.integration


@pytest.fixture()
def image_table(database_url: str, tmp_path: Path, s3_bucket, s3_endpoint: str) -> Iterator[tuple[str, dict]]:
    """A table ``photos (sku, url)`` in its own schema: three S3 images (one by a key under ``base_url``), two local
    files (a path and a ``file://`` URL), and rows that cannot give a picture."""
    bucket, client = s3_bucket
    for name, caption in (
        ("red.png", "red circle"),
        ("blue.png", "blue square"),
        ("shoes/green.png", "green triangle"),
    ):
        client.put_object(Bucket=bucket, Key=f"catalog/{name}", Body=png_bytes(draw(caption, 1)))
    client.put_object(Bucket=bucket, Key="catalog/broken.png", Body=b"no picture here")
    (tmp_path / "yellow.png").write_bytes(png_bytes(draw("yellow circle", 2)))
    (tmp_path / "red2.png").write_bytes(png_bytes(draw("red square", 3)))
    rows = [
        ("s3-red", f"s3://{bucket}/catalog/red.png"),
        ("s3-blue", f"s3://{bucket}/catalog/blue.png"),
        ("s3-key", "shoes/green.png"),  # a key under base_url
        ("local", str(tmp_path / "yellow.png")),
        ("file-url", f"file://{tmp_path / 'red2.png'}"),
        ("broken", f"s3://{bucket}/catalog/broken.png"),
        ("gone", f"s3://{bucket}/catalog/gone.png"),
        ("no-url", None),
        ("ftp", "ftp://example.com/a.png"),
    ]
    schema = f"images_{uuid.uuid4().hex[:8]}"
    url = libpq_url(database_url)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
        connection.execute(f"CREATE TABLE {schema}.photos (sku text PRIMARY KEY, url text)")
        with connection.cursor() as cursor:
            cursor.executemany(f"INSERT INTO {schema}.photos VALUES (%s, %s)", rows)
    options = {
        "table": "photos",
        "schema": schema,
        "id_column": "sku",
        "url_column": "url",
        "base_url": f"s3://{bucket}/catalog/",
        "s3": {"endpoint_url": s3_endpoint, **S3_CREDENTIALS},
        "connection_url": url,
    }
    yield bucket, options
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA {schema} CASCADE")


GOOD = {"s3-red", "s3-blue", "s3-key", "local", "file-url"}


def test_images_are_read_from_s3_and_files_and_each_failure_names_its_reason(image_table) -> None:
    bucket, options = image_table
    loader = create_loader("pgsql_image", **options)
    try:
        result = loader.load([ItemMeta(sku) for sku in [*GOOD, "broken", "gone", "no-url", "ftp", "not-a-row"]])
        assert {item.item_id for item in result.items} == GOOD
        assert all(item.data.mode == "RGB" and item.data.size == (32, 32) for item in result.items)
        by_id = {item.item_id: item for item in result.items}
        assert by_id["s3-key"].extra["image"] == "shoes/green.png"
        assert by_id["s3-key"].extra["image_url"] == f"s3://{bucket}/catalog/shoes/green.png"
        reasons = {failure.meta.item_id: (failure.reason, failure.detail) for failure in result.failed}
        assert reasons["broken"][0] == "unreadable" and "not a readable image" in reasons["broken"][1]
        assert reasons["gone"][0] == "missing" and "catalog/gone.png" in reasons["gone"][1]
        assert reasons["no-url"][0] == "unreadable" and "empty" in reasons["no-url"][1]
        assert reasons["ftp"][0] == "unreadable" and "scheme 'ftp'" in reasons["ftp"][1]
        assert reasons["not-a-row"][0] == "missing"
    finally:
        loader.close()


def test_load_all_streams_every_row_and_reports_the_failed_ones(image_table) -> None:
    _, options = image_table
    loader = create_loader("pgsql_image", **options)
    reported: list[str] = []
    try:
        loaded = [
            item.item_id
            for page in loader.load_all(
                batch_size=4, on_failed=lambda f: reported.extend(failure.meta.item_id for failure in f)
            )
            for item in page
        ]
        assert set(loaded) == GOOD and len(loaded) == len(GOOD)
        assert sorted(reported) == ["broken", "ftp", "gone", "no-url"]
        assert sorted(f.meta.item_id for f in loader.load_all_failed) == sorted(reported)
        assert {meta.item_id for meta in loader.item_metas()} == {*GOOD, "broken", "gone", "no-url", "ftp"}
    finally:
        loader.close()


def test_an_image_is_read_by_its_key_as_search_returns_it(image_table) -> None:
    bucket, options = image_table
    loader = create_loader("pgsql_image", **options)
    try:
        outcomes = loader.load_keys(["shoes/green.png", f"s3://{bucket}/catalog/red.png", "nowhere.png"])
        assert outcomes["shoes/green.png"].data.size == (32, 32)
        assert outcomes[f"s3://{bucket}/catalog/red.png"].data.mode == "RGB"
        assert outcomes["nowhere.png"].reason == "missing"
    finally:
        loader.close()


def test_pgsql_image_is_an_image_loader_the_text_to_image_method_accepts(tmp_path: Path) -> None:
    from embedding_studio.finetuning.plugins.text_to_image import create_plugin
    from embedding_studio.models.tiny import tiny_clip_directory

    assert reads_images("pgsql_image")
    clip = tiny_clip_directory(tmp_path / "clip")
    method = create_plugin(base_model=str(clip), loader={"name": "pgsql_image", "options": {"table": "photos"}})
    assert method.loader.name == "pgsql_image"


def test_urls_map_to_their_store() -> None:
    assert parse_image_url("s3://b/k/1.png").loader == "s3_image"
    assert parse_image_url("gs://b/k/1.png").store == "b"
    assert parse_image_url("/srv/a.png").key == "srv/a.png"
    assert parse_image_url("a.png", base_url="gs://b/p/").key == "p/a.png"
    for bad in ("a.png", "s3://bucket-only", "http://x/y.png", " "):
        with pytest.raises(ImageUrlError):
            parse_image_url(bad)


def test_a_pgsql_image_catalog_is_reindexed_and_search_returns_each_image_key_and_url(
    clean_db: str, image_table, tmp_path: Path, vector_store: VectorStore
) -> None:
    from tests.finetuning.toy_images import VOCABULARY

    from embedding_studio.models.tiny import tiny_clip_directory
    from embedding_studio.serving.search import search_blue
    from embedding_studio.tasks import LoaderSpec, index_catalog

    bucket, options = image_table
    clip = tiny_clip_directory(tmp_path / "clip", vocab=VOCABULARY)
    result = index_catalog(str(clip), LoaderSpec(name="pgsql_image", options=options), batch_size=4, store=vector_store)
    assert result.item_count == len(GOOD) and result.skipped_items == 4  # broken, gone, no-url, ftp: counted
    answer = search_blue("green triangle", limit=10, record_session=False, store=vector_store)
    hits = {hit.item_id: hit.payload for hit in answer.hits}
    assert hits["s3-key"]["image"] == "shoes/green.png"
    assert hits["s3-key"]["image_url"] == f"s3://{bucket}/catalog/shoes/green.png"
    assert hits["local"]["image_url"].endswith("/yellow.png")
