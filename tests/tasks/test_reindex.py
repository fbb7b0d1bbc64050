"""Reindex in this process on the real PostgreSQL, with tiny models: initial indexing, rebuilds, conflicts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from embedding_studio import vectordb
from embedding_studio.serving.search import search_blue
from embedding_studio.tasks import LoaderSpec, ReindexTaskParams, index_catalog, run_reindex
from embedding_studio.tasks.reindex import DestinationLock, ReindexConflictError
from embedding_studio.vectordb import VectorStore


def test_index_catalog_deploys_the_first_model_and_search_finds_an_item_by_its_text(
    clean_db: str, tiny_models: tuple[str, str], catalog: Path, vector_store: VectorStore
) -> None:
    model_a, _ = tiny_models
    result = index_catalog(
        model_a, LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)}), batch_size=16, store=vector_store
    )
    assert result.item_count == 60 and result.deployed_as_blue
    assert vector_store.get_deployment().blue_model_id == model_a
    first_line_text = __import__("json").loads(catalog.read_text().splitlines()[5])["text"]
    answer = search_blue(first_line_text, limit=3, record_session=False, store=vector_store)
    assert answer.model_id == model_a and len(answer.hits) == 3
    assert "item-5" in [hit.item_id for hit in answer.hits]


def test_rebuilding_from_the_blue_collection_keeps_upserts_made_during_the_build(
    clean_db: str, tiny_models: tuple[str, str], catalog: Path, vector_store: VectorStore
) -> None:
    model_a, model_b = tiny_models
    index_catalog(
        model_a, LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)}), batch_size=16, store=vector_store
    )
    from embedding_studio.tasks.workers import _embedder_for

    started = threading.Event()

    def progress(fraction: float, message: str) -> None:
        if "embedded" in message:
            started.set()

    def upsert_while_building() -> None:
        started.wait(30)
        vector_store.apply_item_changes(
            [
                vectordb.ItemChange("new-during-build", "upsert", "water river sea boat", {"n": 1}),
                vectordb.ItemChange("item-0", "upsert", "changed text about music", {"changed": True}),
                vectordb.ItemChange("item-1", "delete"),
            ],
            _embedder_for,
        )

    upserter = threading.Thread(target=upsert_while_building)
    upserter.start()
    result = run_reindex(
        ReindexTaskParams(dest_model_id=model_b, deploy_as_blue=True, batch_size=8, pause_between_batches_s=0.05),
        progress=progress,
        store=vector_store,
    )
    upserter.join()
    assert result.deployed_as_blue and result.source == f"collection of {model_a}"
    contents = {part.item_id: part for batch in vector_store.iter_source_parts(model_b) for part in batch}
    assert "new-during-build" in contents and "item-1" not in contents
    assert contents["item-0"].content == "changed text about music"
    assert contents["item-0"].payload == {"snippet": "changed text about music", "changed": True}
    assert len(contents) == 60  # 60 - 1 deleted + 1 new
    # The previous blue got the same changes directly: a rollback loses nothing either.
    previous = {part.item_id for batch in vector_store.iter_source_parts(model_a) for part in batch}
    assert previous == set(contents)


def test_a_second_reindex_into_the_same_model_is_refused_or_waits(
    clean_db: str, tiny_models: tuple[str, str], catalog: Path, vector_store: VectorStore
) -> None:
    model_a, _ = tiny_models
    loader = LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)})
    holder = DestinationLock(model_a, vector_store.database)
    assert holder.try_acquire()
    try:
        with pytest.raises(ReindexConflictError, match="wait_on_conflict"):
            run_reindex(ReindexTaskParams(dest_model_id=model_a, loader=loader), store=vector_store)
        finished: list[float] = []

        def waiting_reindex() -> None:
            run_reindex(
                ReindexTaskParams(dest_model_id=model_a, loader=loader, wait_on_conflict=True), store=vector_store
            )
            finished.append(time.monotonic())

        thread = threading.Thread(target=waiting_reindex)
        thread.start()
        time.sleep(1.0)
        assert not finished, "the waiting reindex ran while the lock was held"
        released_at = time.monotonic()
    finally:
        holder.release()
    thread.join(60)
    assert finished and finished[0] >= released_at
    assert vector_store.get_collection(model_a).state == "ready"


def reindex_file_as_blue(store: VectorStore, model_id: str, catalog_file: Path) -> object:
    loader = LoaderSpec(name="jsonl_catalog", options={"path": str(catalog_file)})
    return run_reindex(ReindexTaskParams(dest_model_id=model_id, deploy_as_blue=True, loader=loader), store=store)


def test_a_failed_build_leaves_the_blue_collection_alone(
    clean_db: str, tiny_models: tuple[str, str], catalog: Path, tmp_path: Path, vector_store: VectorStore
) -> None:
    model_a, model_b = tiny_models
    index_catalog(model_a, LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)}), store=vector_store)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"_id": "x", "text": "ok"}\nnot json\n')
    with pytest.raises(Exception, match="not valid JSON"):
        reindex_file_as_blue(vector_store, model_b, broken)
    assert vector_store.get_deployment().blue_model_id == model_a
    assert vector_store.get_collection(model_b) is None
    assert search_blue("water", limit=2, record_session=False, store=vector_store).model_id == model_a


def test_a_reindex_that_reads_no_items_does_not_flip_search_to_an_empty_collection(
    clean_db: str, tiny_models: tuple[str, str], catalog: Path, tmp_path: Path, vector_store: VectorStore
) -> None:
    model_a, model_b = tiny_models
    index_catalog(model_a, LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)}), store=vector_store)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(vectordb.EmptyCollectionError, match="no items in its collection"):
        reindex_file_as_blue(vector_store, model_b, empty)
    assert vector_store.get_deployment().blue_model_id == model_a
    assert vector_store.get_collection(model_b) is None  # the unfinished collection went with the failed build
    assert len(search_blue("water", limit=2, record_session=False, store=vector_store).hits) == 2


def test_indexed_items_carry_a_display_payload_that_search_returns(
    clean_db: str, tiny_models: tuple[str, str], catalog: Path, vector_store: VectorStore
) -> None:
    """A loader's items get a title and a snippet; a build's ItemDisplay is kept for its later upserts."""
    import json

    from psycopg import sql

    from embedding_studio.items.display import ItemDisplay
    from embedding_studio.tasks.params import ItemDisplayOptions
    from embedding_studio.tasks.workers import _embedder_for

    model_a, model_b = tiny_models
    index_catalog(
        model_a, LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)}), batch_size=16, store=vector_store
    )
    line = json.loads(catalog.read_text().splitlines()[5])
    hits = {
        hit.item_id: hit for hit in search_blue(line["text"], limit=5, record_session=False, store=vector_store).hits
    }
    assert hits["item-5"].payload == {"title": line["title"], "snippet": line["text"]}
    assert vector_store.get_collection(model_a).item_display == ItemDisplay()  # type: ignore[union-attr]

    # An old collection's items have no payload: rebuilding from it fills them from the stored text.
    table = vector_store.get_collection(model_a).table_name  # type: ignore[union-attr]
    with vector_store.database.connection() as connection:
        connection.execute(sql.SQL("UPDATE {} SET payload = NULL").format(sql.Identifier(table)))
    display = ItemDisplayOptions(fields=["title"], snippet_chars=20)
    loader = LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)})
    run_reindex(ReindexTaskParams(dest_model_id=model_b, loader=loader, item_display=display), store=vector_store)
    rebuilt = {part.item_id: part.payload for batch in vector_store.iter_source_parts(model_b) for part in batch}
    assert rebuilt["item-5"]["title"] == line["title"] and len(rebuilt["item-5"]["snippet"]) <= 20
    assert vector_store.get_collection(model_b).item_display == display.config()  # type: ignore[union-attr]
    vector_store.drop_collection(model_b)
    copied = run_reindex(ReindexTaskParams(dest_model_id=model_b), store=vector_store)
    assert copied.source == f"collection of {model_a}"
    backfilled = {part.item_id: part.payload for batch in vector_store.iter_source_parts(model_b) for part in batch}
    assert backfilled["item-5"] == {"snippet": f"{line['title']}. {line['text']}"}

    # An upsert gets each serving collection's kind of payload, with its own on top.
    vector_store.apply_item_changes(
        [vectordb.ItemChange("new", "upsert", {"title": "Boat", "text": "water river sea boat"}, {"shelf": 2})],
        _embedder_for,
    )
    for model_id in (model_a, model_b):
        parts = {part.item_id: part.payload for batch in vector_store.iter_source_parts(model_id) for part in batch}
        assert parts["new"] == {"title": "Boat", "snippet": "water river sea boat", "shelf": 2}
