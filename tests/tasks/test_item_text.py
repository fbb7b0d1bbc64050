"""Training, reindex and API upserts embed an item as the same texts; upserted items stay in the catalog.

On the real embedded PostgreSQL with tiny models. Training here is the fine-tuning data preparation (the
items a batch shows, loaded by the method's loader and prepared by its item set manager), which is where
the texts a model is trained on are decided.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

from embedding_studio.clickstream.types import FineTuningInput
from embedding_studio.config import get_settings
from embedding_studio.finetuning.method import FineTuningMethod, LoaderConfig
from embedding_studio.finetuning.pipeline import _load_items, _prepare_data
from embedding_studio.finetuning.query_retriever import TextQueryRetriever
from embedding_studio.items import ItemMeta
from embedding_studio.items.upserted_items import UpsertedItems
from embedding_studio.tasks import LoaderSpec, ReindexTaskParams, index_catalog, run_reindex
from embedding_studio.tasks.params import ItemTextOptions
from embedding_studio.tasks.workers import TaskWorkers

from .worker_process import COMMON_WORDS, clear_queue

if TYPE_CHECKING:
    from embedding_studio.db import Database
    from embedding_studio.tasks.repository import TaskRepository
    from embedding_studio.vectordb import VectorStore

ITEM_COUNT = 24


def write_product_catalog(path: Path) -> Path:
    """Products named as a shop names them: no title, no text. Every third description runs past 8 words."""
    words = COMMON_WORDS[:300]
    with path.open("w", encoding="utf-8") as handle:
        for index in range(ITEM_COUNT):
            length = 14 if index % 3 == 0 else 5
            description = " ".join(words[(index * 7 + offset * 13) % len(words)] for offset in range(length))
            record = {"_id": f"p-{index}", "name": words[index], "description": description, "sku": f"SKU-{index}"}
            handle.write(json.dumps(record) + "\n")
    return path


def sessions(item_ids: list[str]) -> list[FineTuningInput]:
    """One session per item, each with its own query, showing that item and the next, the first clicked."""
    return [
        FineTuningInput(
            session_id=f"s{index}",
            query=f"query {index}",
            results=[item_id, item_ids[(index + 1) % len(item_ids)]],
            ranks={item_id: 1, item_ids[(index + 1) % len(item_ids)]: 2},
            events=[item_id],
            timestamp=datetime(2026, 1, 1),
        )
        for index, item_id in enumerate(item_ids)
    ]


def trained_parts(
    method: FineTuningMethod, item_ids: list[str], database: Database
) -> tuple[dict[str, list[str]], int]:
    """The texts fine-tuning trains on, through the pipeline's own loading and preparation; and the failures."""
    inputs = sessions(item_ids)
    downloaded, failed = _load_items(method, UpsertedItems(database), inputs, get_settings())
    data = _prepare_data(method, inputs, downloaded, TextQueryRetriever(), "clickstream batch 1")
    return dict(data.items.parts), len(failed) + len(data.items.failed)


def indexed_parts(store: VectorStore, model_id: str) -> dict[str, list[str]]:
    parts: dict[str, list[str]] = {}
    for batch in store.iter_source_parts(model_id):
        for part in batch:
            parts.setdefault(part.item_id, []).append(part.content)
    return parts


@pytest.mark.parametrize(
    "item_text",
    [
        pytest.param(None, id="default: every field, sku included"),
        pytest.param({"fields": ["name", "description"], "words_per_part": 8}, id="chosen fields, 8-word parts"),
        pytest.param({"template": "{name} ({sku}): {description}", "words_per_part": 8}, id="template"),
    ],
)
def test_training_and_reindex_embed_the_same_texts_of_a_json_catalog_with_its_own_field_names(
    clean_db: str,
    tiny_models: tuple[str, str],
    tmp_path: Path,
    item_text: dict[str, Any] | None,
    vector_store: VectorStore,
) -> None:
    catalog = write_product_catalog(tmp_path / "products.jsonl")
    loader = LoaderConfig(name="jsonl_catalog", options={"path": str(catalog)})
    options: dict[str, Any] = {"item_text": item_text} if item_text is not None else {}
    method = FineTuningMethod(name="products", loader=loader, validation_pool_size=0, **options)
    item_ids = [f"p-{index}" for index in range(ITEM_COUNT)]

    trained, failures = trained_parts(method, item_ids, vector_store.database)

    model_id, _ = tiny_models
    run_reindex(
        ReindexTaskParams(
            dest_model_id=model_id,
            deploy_as_blue=True,
            loader=LoaderSpec(name=loader.name, options=loader.options),
            item_text=ItemTextOptions.of(method.item_text),  # what a fine-tuning deployment passes
        ),
        store=vector_store,
    )
    indexed = indexed_parts(vector_store, model_id)
    assert failures == 0 and set(trained) == set(indexed) == set(item_ids)
    assert trained == indexed
    if item_text is None:
        record = json.loads(catalog.read_text().splitlines()[1])
        assert trained["p-1"] == [f"{record['name']}. {record['description']}. SKU-1"]
    else:
        assert len(trained["p-0"]) == 2 and all(len(part.split()) <= 8 for part in trained["p-0"])
    assert vector_store.get_collection(model_id).item_text == method.item_text


def test_items_named_otherwise_than_title_and_text_no_longer_fail_in_training(
    clean_db: str, tmp_path: Path, database: Database
) -> None:
    catalog = tmp_path / "products.jsonl"
    catalog.write_text(
        "".join(
            json.dumps({"_id": f"n-{index}", "name": f"kettle {index}", "description": "boils water"}) + "\n"
            for index in range(10)
        )
    )
    method = FineTuningMethod(
        name="products",
        loader=LoaderConfig(name="jsonl_catalog", options={"path": str(catalog)}),
        validation_pool_size=0,
    )
    trained, failures = trained_parts(method, [f"n-{index}" for index in range(10)], database)
    assert failures == 0 and trained["n-3"] == ["kettle 3. boils water"]


def test_items_upserted_through_the_api_are_in_the_catalog_fine_tuning_reads_and_a_reindex_keeps_them(
    clean_db: str,
    tiny_models: tuple[str, str],
    tmp_path: Path,
    task_repository: TaskRepository,
    vector_store: VectorStore,
) -> None:
    from embedding_studio.api.app import create_app

    catalog = write_product_catalog(tmp_path / "products.jsonl")
    loader = LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)})
    model_a, model_b = tiny_models
    index_catalog(model_a, loader, store=vector_store)
    client = TestClient(create_app(run_migrations=False))
    new_item = {"name": "teapot", "description": "a pot for tea with a long spout", "sku": "SKU-new"}
    try:
        refused = client.post("/api/v1/items/upsert", json={"items": [{"item_id": "x", "fields": {"sku": None}}]})
        assert refused.status_code == 422 and "item 'x': the item has no field with a text" in refused.text
        both = client.post(
            "/api/v1/items/upsert", json={"items": [{"item_id": "y", "text": "a", "fields": {"a": "b"}}]}
        )
        assert both.status_code == 422 and "give text, fields or image, exactly one" in both.text
        upserted = client.post(
            "/api/v1/items/upsert",
            json={
                "items": [
                    {"item_id": "new-1", "fields": new_item, "payload": {"shelf": 3}},
                    {"item_id": "p-0", "text": "replaced through the api"},
                ]
            },
        )
        deleted = client.post("/api/v1/items/delete", json={"item_ids": ["p-1"]})
        for answer in (upserted, deleted):
            assert answer.status_code == 202, answer.text
            TaskWorkers(task_repository, vector_store).upsert_worker(answer.json()["id"])
            assert client.get(f"/api/v1/items/tasks/{answer.json()['id']}").json()["status"] == "done"
    finally:
        clear_queue()

    # Fine-tuning's catalog: the upserted items as sent, the deleted one missing with its reason.
    method = FineTuningMethod(name="products", loader=LoaderConfig(name=loader.name, options=loader.options))
    catalog_loader = method.create_loader(vector_store.upserted_items)
    loaded = catalog_loader.load([ItemMeta("new-1"), ItemMeta("p-0"), ItemMeta("p-1"), ItemMeta("p-2")])
    by_id = {item.item_id: item for item in loaded.items}
    assert by_id["new-1"].data == new_item and by_id["new-1"].extra == {"shelf": 3}
    assert by_id["p-0"].data == "replaced through the api" and "p-2" in by_id
    assert [(failure.meta.item_id, failure.reason) for failure in loaded.failed] == [("p-1", "missing")]
    assert "deleted through the API" in loaded.failed[0].detail
    streamed = {item.item_id for batch in catalog_loader.load_all(10) for item in batch}
    assert streamed == {f"p-{index}" for index in range(ITEM_COUNT)} - {"p-1"} | {"new-1"}
    assert "new-1" in {item.item_id for item in catalog_loader.sample(ITEM_COUNT + 5)}

    # A reindex from the loader keeps them, cut as training cuts them, with their payload.
    params = ReindexTaskParams(dest_model_id=model_b, deploy_as_blue=True, loader=loader)
    result = run_reindex(params, store=vector_store)
    assert result.item_count == ITEM_COUNT and result.skipped_items == 0
    indexed = indexed_parts(vector_store, model_b)
    trained, failures = trained_parts(method, ["new-1", "p-0", "p-2", "p-3", "p-4", "p-5"], vector_store.database)
    assert failures == 0 and "p-1" not in indexed
    assert {item_id: indexed[item_id] for item_id in trained} == trained
    payloads = {part.item_id: part.payload for batch in vector_store.iter_source_parts(model_b) for part in batch}
    # Its own payload, with what search shows of every item: its name as the title, a snippet of its text.
    assert payloads["new-1"]["shelf"] == 3 and payloads["new-1"]["title"] == "teapot" and payloads["new-1"]["snippet"]
    # The collection it replaced got the same upserts directly: a rollback loses nothing either.
    assert set(indexed_parts(vector_store, model_a)) == set(indexed)
