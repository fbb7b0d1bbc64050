"""The vector store on the real embedded PostgreSQL: collections, best-part search, flips, the change log."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from embedding_studio import vectordb
from embedding_studio.vectordb import ItemChange, ItemPart, VectorStore

DIM = 8


def unit(values: list[float]) -> np.ndarray:
    vector = np.asarray(values + [0.0] * (DIM - len(values)), dtype=np.float32)
    return vector / np.linalg.norm(vector)


def one_hot(index: int) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[index] = 1.0
    return vector


def hash_embed(texts: list[str]) -> np.ndarray:
    """A deterministic stand-in model: the text's first letter picks the axis."""
    return np.stack([one_hot(ord(text[0]) % DIM) if text else one_hot(0) for text in texts])


def build(store: VectorStore, model_id: str, parts: list[ItemPart], deploy: bool) -> vectordb.Collection:
    store.register_model(model_id, DIM, source="test")
    collection = store.start_collection(model_id)
    store.copy_parts(collection.table_name, parts)
    store.build_index(collection.table_name)
    return store.finish_collection(model_id, hash_embed, collection.change_seq_start or 0, deploy_as_blue=deploy)


def test_table_names_are_safe_identifiers_whatever_the_model_id() -> None:
    name = vectordb.collection_table_name('/tmp/my model"; drop table x; --')
    assert name.startswith("collection_") and name.replace("_", "").isalnum() and len(name) < 63
    assert name == vectordb.collection_table_name('/tmp/my model"; drop table x; --')
    assert name != vectordb.collection_table_name("other")


def test_search_scores_an_item_by_its_best_part_and_returns_each_item_once(
    clean_db: str, vector_store: VectorStore
) -> None:
    parts = [
        ItemPart("long", 0, "far part", unit([0, 1]), {"title": "Long"}),
        ItemPart("long", 1, "close part", unit([1, 0.05]), {"title": "Long"}),
        ItemPart("long", 2, "also close", unit([1, 0.1]), {"title": "Long"}),
        ItemPart("short", 0, "medium", unit([1, 0.5]), {"title": "Short"}),
        ItemPart("other", 0, "far", unit([0, 0, 1]), None),
    ]
    build(vector_store, "model-a", parts, deploy=True)
    hits = vector_store.search(unit([1, 0]), limit=10)
    assert [hit.item_id for hit in hits] == ["long", "short", "other"]
    assert hits[0].payload == {"title": "Long"}
    assert hits[0].score == pytest.approx(float(unit([1, 0.05]) @ unit([1, 0])), abs=1e-5)
    assert [hit.item_id for hit in vector_store.search(unit([1, 0]), limit=1, offset=1)] == ["short"]


def test_search_without_a_blue_model_says_so(clean_db: str, vector_store: VectorStore) -> None:
    with pytest.raises(vectordb.NoBlueModelError, match="no model is deployed"):
        vector_store.search(unit([1]), limit=3)


def test_register_model_refuses_another_dimension(clean_db: str, vector_store: VectorStore) -> None:
    vector_store.register_model("model-a", DIM, source="test")
    with pytest.raises(vectordb.DimensionMismatchError, match="8-dimensional"):
        vector_store.register_model("model-a", 16, source="test")


def test_flip_keeps_the_previous_blue_for_rollback_and_retires_the_one_before(
    clean_db: str, vector_store: VectorStore
) -> None:
    build(vector_store, "model-a", [ItemPart("x", 0, "a", one_hot(0))], deploy=True)
    build(vector_store, "model-b", [ItemPart("x", 0, "b", one_hot(1))], deploy=True)
    deployment = vector_store.get_deployment()
    assert (deployment.blue_model_id, deployment.previous_blue_model_id) == ("model-b", "model-a")
    assert vector_store.get_collection("model-a").state == "ready"

    retired_table = vector_store.get_collection("model-a").table_name
    build(vector_store, "model-c", [ItemPart("x", 0, "c", one_hot(2))], deploy=True)
    assert vector_store.get_collection("model-a").state == "retired"
    with vector_store.database.connection() as connection:  # its stale vectors do not keep their disk
        assert connection.execute("SELECT to_regclass(%s)", (retired_table,)).fetchone() == (None,)
    with pytest.raises(vectordb.CollectionStateError, match="retired"):
        vector_store.deploy("model-a")
    assert vector_store.get_collection("model-b").state == "ready"

    with pytest.raises(vectordb.RollbackUnavailableError, match="not the blue model"):
        vector_store.rollback(from_model_id="model-b")
    deployment = vector_store.rollback(from_model_id="model-c")
    assert (deployment.blue_model_id, deployment.previous_blue_model_id) == ("model-b", "model-c")
    assert vector_store.get_collection("model-c").state == "ready"
    assert vector_store.get_blue_collection().model_id == "model-b"
    models = {record.id: record for record in vector_store.list_models()}
    assert models["model-b"].is_blue and models["model-c"].is_previous_blue and not models["model-a"].is_blue


def test_an_empty_collection_never_replaces_a_blue_one_that_serves_items(
    clean_db: str, vector_store: VectorStore
) -> None:
    """A loader pointed at an empty prefix reads nothing without failing; search must keep answering."""
    build(vector_store, "model-empty-first", [], deploy=True)  # an empty catalog's first index may go blue
    assert vector_store.get_deployment().blue_model_id == "model-empty-first"
    build(vector_store, "model-a", [ItemPart("x", 0, "a", one_hot(0))], deploy=True)
    with pytest.raises(vectordb.EmptyCollectionError, match="'model-b' has no items .* blue model 'model-a'"):
        build(vector_store, "model-b", [], deploy=True)
    deployment = vector_store.get_deployment()
    assert (deployment.blue_model_id, deployment.previous_blue_model_id) == ("model-a", "model-empty-first")
    assert [hit.item_id for hit in vector_store.search(one_hot(0), limit=3)] == ["x"]
    assert vector_store.get_collection("model-b").state == "building"  # the flip's transaction left it unfinished
    vector_store.drop_collection("model-b")
    build(vector_store, "model-b", [], deploy=False)  # ready but not blue: allowed, and deploying it is refused
    with pytest.raises(vectordb.EmptyCollectionError):
        vector_store.deploy("model-b")


def test_rollback_without_a_previous_model_is_refused(clean_db: str, vector_store: VectorStore) -> None:
    with pytest.raises(vectordb.RollbackUnavailableError, match="no model has been deployed"):
        vector_store.rollback()
    build(vector_store, "model-a", [ItemPart("x", 0, "a", one_hot(0))], deploy=True)
    with pytest.raises(vectordb.RollbackUnavailableError, match="no previous blue"):
        vector_store.rollback()


def test_the_blue_collection_is_never_rebuilt_in_place(clean_db: str, vector_store: VectorStore) -> None:
    build(vector_store, "model-a", [ItemPart("x", 0, "a", one_hot(0))], deploy=True)
    with pytest.raises(vectordb.CollectionStateError, match="blue model"):
        vector_store.start_collection("model-a")
    with pytest.raises(vectordb.CollectionStateError):
        vector_store.drop_collection("model-a")


def test_upserts_replace_all_parts_and_deletes_remove_the_item(clean_db: str, vector_store: VectorStore) -> None:
    build(
        vector_store,
        "model-a",
        [ItemPart("x", 0, "a one", one_hot(0)), ItemPart("x", 1, "a two", one_hot(0))],
        deploy=True,
    )
    written = vector_store.apply_item_changes(
        [ItemChange("x", "upsert", "b only", {"v": 2}), ItemChange("y", "upsert", "c text", None)],
        lambda model_id: hash_embed,
    )
    assert written == ["model-a"]
    hits = vector_store.search(one_hot(ord("b") % DIM), limit=5)
    # The upsert's own payload, with what the collection shows of every item: a snippet of its text.
    assert hits[0].item_id == "x" and hits[0].payload == {"snippet": "b only", "v": 2}
    assert vector_store.count_source_parts("model-a") == 2  # x has one part now, plus y
    vector_store.apply_item_changes([ItemChange("x", "delete")], lambda model_id: hash_embed)
    assert [hit.item_id for hit in vector_store.search(one_hot(0), limit=5)] == ["y"]


def test_changes_logged_while_a_collection_builds_reach_it_before_it_serves(
    clean_db: str, vector_store: VectorStore
) -> None:
    """The snapshot misses an upsert, a delete and a new item; the replay brings all three in."""
    build(
        vector_store, "model-a", [ItemPart("x", 0, "a", one_hot(0)), ItemPart("gone", 0, "a", one_hot(0))], deploy=True
    )
    vector_store.register_model("model-b", DIM, source="test")
    building = vector_store.start_collection("model-b")
    snapshot = [part for batch in vector_store.iter_source_parts("model-a") for part in batch]
    # Arrive after the snapshot point: the blue collection gets them directly, the new one through the log.
    vector_store.apply_item_changes(
        [
            ItemChange("x", "upsert", "b new", None),
            ItemChange("gone", "delete"),
            ItemChange("new", "upsert", "c", None),
        ],
        lambda model_id: hash_embed,
    )
    vector_store.copy_parts(
        building.table_name,
        [ItemPart(part.item_id, part.part, part.content, one_hot(5), part.payload) for part in snapshot],
    )
    vector_store.build_index(building.table_name)
    finished = vector_store.finish_collection(
        "model-b", hash_embed, building.change_seq_start or 0, deploy_as_blue=True
    )
    assert finished.state == "blue" and finished.item_count == 2
    contents = {part.item_id: part.content for batch in vector_store.iter_source_parts("model-b") for part in batch}
    assert contents == {"x": "b new", "new": "c"}


def test_each_collection_cuts_an_upserted_item_with_its_own_item_text_and_the_item_is_kept(
    clean_db: str, vector_store: VectorStore
) -> None:
    from embedding_studio.items import ItemText, ItemTextError

    vector_store.register_model("model-a", DIM, source="test")
    collection = vector_store.start_collection("model-a", ItemText(fields=("name", "description"), words_per_part=2))
    vector_store.finish_collection("model-a", hash_embed, collection.change_seq_start or 0, deploy_as_blue=True)
    assert vector_store.get_collection("model-a").item_text == ItemText(
        fields=("name", "description"), words_per_part=2
    )
    item = {"name": "Kettle", "description": "boils water fast", "sku": "K-1"}
    vector_store.apply_item_changes([ItemChange("k", "upsert", item, {"v": 1})], lambda model_id: hash_embed)
    parts = [part.content for batch in vector_store.iter_source_parts("model-a") for part in batch]
    assert parts == ["Kettle. boils", "water fast"]  # the sku is not one of the fields; two words a part
    kept = vector_store.get_upserted_items()
    assert kept["k"].data == item and kept["k"].payload == {"v": 1} and not kept["k"].deleted
    vector_store.apply_item_changes([ItemChange("k", "delete")], lambda model_id: hash_embed)
    assert vector_store.get_upserted_items(["k"])["k"].deleted
    with pytest.raises(ItemTextError, match="item 'bad' cannot be embedded into the collection of 'model-a'.*sku"):
        vector_store.apply_item_changes([ItemChange("bad", "upsert", {"sku": "K-2"})], lambda model_id: hash_embed)
    assert "bad" not in vector_store.get_upserted_items()  # refused whole: nothing logged, nothing kept


def test_a_deep_page_is_searched_wider_than_the_connections_ef_search(clean_db: str, vector_store: VectorStore) -> None:
    build(vector_store, "model-a", [ItemPart(f"i{n:02d}", 0, "a", unit([1, n / 100])) for n in range(50)], deploy=True)
    hits = vector_store.search(unit([1, 0]), limit=10, offset=40)  # 200 parts fetched: SET LOCAL hnsw.ef_search
    assert [hit.item_id for hit in hits] == [f"i{n:02d}" for n in range(40, 50)]


def test_a_copy_that_fails_midway_or_before_its_commit_writes_nothing(clean_db: str, vector_store: VectorStore) -> None:
    vector_store.register_model("model-a", DIM, source="test")
    collection = vector_store.start_collection("model-a")

    def parts_then_failure() -> Iterator[ItemPart]:
        yield ItemPart("x", 0, "a", one_hot(0))
        raise ConnectionError("the source went away")

    with pytest.raises(ConnectionError):
        vector_store.copy_parts(collection.table_name, parts_then_failure())
    assert vector_store.count_source_parts("model-a") == 0

    def refuse(connection: object) -> None:
        raise RuntimeError("claim lost")

    with pytest.raises(RuntimeError, match="claim lost"):
        vector_store.copy_parts(collection.table_name, [ItemPart("x", 0, "a", one_hot(0))], before_commit=refuse)
    assert vector_store.count_source_parts("model-a") == 0
    assert vector_store.copy_parts(collection.table_name, [ItemPart("x", 0, "a", one_hot(0))], replace_items=["x"]) == 1
    assert vector_store.count_source_parts("model-a") == 1
