"""A sharded reindex in this process (``tasks.shards``): the owner alone embeds every shard, a shard that fails
midway is rolled back and embedded again, and a catalog below the threshold keeps the single-job path."""

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
