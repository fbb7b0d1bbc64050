# ruff: noqa: F401, F811  (the object-store fixtures are imported from tests/items/conftest.py)
"""Image catalogs in a real S3 server (moto) and the GCS emulator: reindexed with a tiny CLIP, searched by text.

The images are generated here (coloured shapes); one object is not an image, and must be counted, not dropped.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.finetuning.toy_images import VOCABULARY, catalog, png_bytes
from tests.items.conftest import S3_CREDENTIALS, gcs_bucket, gcs_endpoint, s3_bucket, s3_endpoint

from embedding_studio.serving.search import search_blue
from embedding_studio.tasks import LoaderSpec, index_catalog
from embedding_studio.vectordb import VectorStore


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from embedding_studio.models.tiny import tiny_clip_directory

    return tiny_clip_directory(tmp_path_factory.mktemp("clip") / "clip", vocab=VOCABULARY)


IMAGES = catalog(2)  # 24 images, two of each caption


def test_s3_images_are_indexed_and_text_search_returns_them_with_their_key(
    clean_db: str,
    clip_dir: Path,
    s3_bucket,
    s3_endpoint: str,
    vector_store: VectorStore,
) -> None:
    bucket, client = s3_bucket
    for item_id, image in IMAGES.items():
        client.put_object(Bucket=bucket, Key=f"shapes/{item_id}.png", Body=png_bytes(image))
    client.put_object(Bucket=bucket, Key="shapes/broken.png", Body=b"not a png at all")
    options = {
        "bucket": bucket,
        "prefix": "shapes/",
        "extension": ".png",
        "endpoint_url": s3_endpoint,
        **S3_CREDENTIALS,
    }
    result = index_catalog(
        str(clip_dir), LoaderSpec(name="s3_image", options=options), batch_size=8, store=vector_store
    )
    assert result.item_count == len(IMAGES) and result.deployed_as_blue
    assert result.skipped_items == 1  # the unreadable object is counted, not silently skipped
    answer = search_blue("red circle", limit=5, record_session=False, store=vector_store)
    assert len(answer.hits) == 5
    hit = answer.hits[0]
    assert hit.item_id in IMAGES and -1.0 <= hit.score <= 1.0
    assert hit.payload["image"] == f"shapes/{hit.item_id}.png"
    assert hit.payload["image_url"] == f"s3://{bucket}/shapes/{hit.item_id}.png"
    assert vector_store.get_collection(str(clip_dir)).state == "blue"


def test_gcs_images_are_indexed_the_same_way(
    clean_db: str,
    clip_dir: Path,
    gcs_bucket,
    gcs_endpoint: str,
    vector_store: VectorStore,
) -> None:
    bucket_name, client = gcs_bucket
    bucket = client.bucket(bucket_name)
    for item_id, image in list(IMAGES.items())[:6]:
        bucket.blob(f"{item_id}.png").upload_from_string(png_bytes(image), content_type="image/png")
    options = {"bucket": bucket_name, "extension": ".png", "api_endpoint": gcs_endpoint, "anonymous": True}
    result = index_catalog(
        str(clip_dir), LoaderSpec(name="gcs_image", options=options), batch_size=4, store=vector_store
    )
    assert result.item_count == 6 and result.skipped_items == 0
    hits = search_blue("blue square", limit=3, record_session=False, store=vector_store).hits
    assert all(hit.payload["image_url"].startswith(f"gs://{bucket_name}/") for hit in hits)
