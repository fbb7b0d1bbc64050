"""A sharded reindex in this process (``tasks.shards``): the owner alone embeds every shard, a shard that fails
midway is rolled back and embedded again, a catalog below the threshold keeps the single-job path, and an image
catalog shards as a text one does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from embedding_studio.items.loaders.upserted import WithUpsertedItems
from embedding_studio.tasks import LoaderSpec, ReindexTaskParams, run_reindex
from embedding_studio.tasks.shards import cut_into_shards
from embedding_studio.vectordb import VectorStore

from .worker_process import write_catalog

pytestmark = pytest.mark.integration


def test_ids_are_cut_sorted_into_consecutive_slices() -> None:
    assert cut_into_shards(["c", "a", "e", "b", "d"], 2) == [["a", "b"], ["c", "d"], ["e"]]


def test_a_shard_failing_midway_is_written_again_and_every_item_is_indexed_once(
    clean_db: str,
    tiny_models: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    vector_store: VectorStore,
) -> None:
    monkeypatch.setenv("EMBEDDING_STUDIO_REINDEX_SHARD_THRESHOLD", "100")
    monkeypatch.setenv("EMBEDDING_STUDIO_REINDEX_SHARD_SIZE", "60")
    monkeypatch.setenv("EMBEDDING_STUDIO_REINDEX_SHARD_POLL_S", "0.1")
    catalog = write_catalog(tmp_path / "corpus.jsonl", 240)
    original_load = WithUpsertedItems.load
    calls = {"count": 0}

    def load_failing_once(self: WithUpsertedItems, items: Any) -> Any:
        calls["count"] += 1
        if calls["count"] == 2:  # the second batch of the first shard: its first batch is already in the COPY
            raise ConnectionError("the catalog went away for a moment")
        return original_load(self, items)

    monkeypatch.setattr(WithUpsertedItems, "load", load_failing_once)
    messages: list[str] = []
    model_a, model_b = tiny_models
    result = run_reindex(
        ReindexTaskParams(
            dest_model_id=model_a,
            deploy_as_blue=True,
            batch_size=20,
            loader=LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)}),
        ),
        progress=lambda fraction, message: messages.append(message),
        task_id="in-process",  # no task row: the helper jobs it queues find none and end at once
        store=vector_store,
    )
    assert result.shards == 4 and result.retried_shards == 1 and result.deployed_as_blue
    assert sum(result.shard_workers.values()) == 4
    assert result.item_count == result.part_count == 240
    collection = vector_store.get_collection(model_a)
    assert collection is not None
    with vector_store.database.connection() as connection:
        rows = connection.execute(f'SELECT count(*), count(DISTINCT item_id) FROM "{collection.table_name}"').fetchone()
        assert rows == (240, 240)
        assert connection.execute("SELECT count(*) FROM reindex_shards").fetchone() == (0,)
    assert any(message.startswith("shards 4/4 done") for message in messages), messages

    monkeypatch.setenv("EMBEDDING_STUDIO_REINDEX_SHARD_THRESHOLD", "1000")
    small = run_reindex(
        ReindexTaskParams(dest_model_id=model_b, batch_size=64), task_id="in-process-2", store=vector_store
    )
    assert small.shards == 0 and small.item_count == 240 and "shards" not in small.as_dict()


def test_an_image_catalog_is_embedded_by_shards_and_a_helper_reads_the_same_pictures(
    clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vector_store: VectorStore
) -> None:
    """An image model's reindex shards like a text one: every picture is embedded once, the unreadable file is counted
    as skipped by its shard, and a helper's reader, rebuilt from the owner's description, reads the same pictures."""
    from tests.finetuning.toy_images import VOCABULARY, catalog, png_bytes

    from embedding_studio.items.display import ItemDisplay
    from embedding_studio.items.item_text import ItemText
    from embedding_studio.models.tiny import tiny_clip_directory
    from embedding_studio.serving.search import search_blue
    from embedding_studio.tasks.image_index import image_reader
    from embedding_studio.tasks.reindex import shard_reader_of

    monkeypatch.setenv("EMBEDDING_STUDIO_REINDEX_SHARD_THRESHOLD", "10")
    monkeypatch.setenv("EMBEDDING_STUDIO_REINDEX_SHARD_SIZE", "8")
    monkeypatch.setenv("EMBEDDING_STUDIO_REINDEX_SHARD_POLL_S", "0.1")
    images = catalog(2)  # 24 pictures
    root = tmp_path / "images"
    root.mkdir()
    for image_id, picture in images.items():
        (root / f"{image_id}.png").write_bytes(png_bytes(picture))
    (root / "broken.png").write_bytes(b"not a png at all")
    spec = LoaderSpec(name="local_image", options={"root": str(root)})
    clip = str(tiny_clip_directory(tmp_path / "clip", vocab=VOCABULARY))

    owner_reader = image_reader(vector_store, spec, ItemDisplay())
    helper_reader = shard_reader_of(vector_store, owner_reader.describe, ItemText(), ItemDisplay())
    try:
        ids = owner_reader.item_ids()
        assert len(ids) == 25 and "broken" in ids
        some = ["broken", *sorted(images)[:2]]
        for reader in (owner_reader, helper_reader):
            read = reader.read(some)
            assert [part.item_id for part in read.parts] == sorted(images)[:2]
            assert [picture.size for picture in read.inputs] == [(32, 32), (32, 32)]
            assert read.skipped == ["broken"]
            assert read.parts[0].payload["image"] == f"{sorted(images)[0]}.png"
    finally:
        owner_reader.close()
        helper_reader.close()

    result = run_reindex(
        ReindexTaskParams(dest_model_id=clip, deploy_as_blue=True, batch_size=4, loader=spec),
        task_id="in-process-images",  # no task row: the helper jobs it queues find none and end at once
        store=vector_store,
    )
    assert result.shards == 4 and sum(result.shard_workers.values()) == 4
    assert result.item_count == result.part_count == 24 and result.skipped_items == 1
    collection = vector_store.get_collection(clip)
    assert collection is not None and collection.state == "blue"
    with vector_store.database.connection() as connection:
        rows = connection.execute(f'SELECT count(*), count(DISTINCT item_id) FROM "{collection.table_name}"').fetchone()
        assert rows == (24, 24)
    hit = search_blue("red circle", limit=3, record_session=False, store=vector_store).hits[0]
    assert hit.item_id in images
    assert hit.payload["image"] == f"{hit.item_id}.png"
    assert hit.payload["image_url"] == str(root.resolve() / f"{hit.item_id}.png")
