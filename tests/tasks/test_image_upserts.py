"""Image upserts: ``POST /api/v1/items/upsert`` names an image by its key in the catalog's image loader, the worker
reads and embeds it with the blue CLIP, and search by text returns it with its key and URL; text sent to an image
collection (or an image to a text one) is a 422 when asked for, not a task that fails later."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.finetuning.toy_images import VOCABULARY, draw, png_bytes

from embedding_studio.tasks import LoaderSpec, TaskRepository, TaskStatus, TaskWorkers, index_catalog
from embedding_studio.vectordb import VectorStore


@pytest.fixture()
def image_catalog(
    clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vector_store: VectorStore
) -> Iterator[tuple[TestClient, Path]]:
    """Six shapes in a local directory, indexed as blue with a tiny CLIP; that directory is the catalog loader."""
    from embedding_studio.api.app import create_app
    from embedding_studio.config import reset_settings
    from embedding_studio.models.tiny import tiny_clip_directory

    root = tmp_path / "images"
    root.mkdir()
    for number, caption in enumerate(["red circle", "blue square", "green triangle"] * 2):
        (root / f"shape-{number}.png").write_bytes(png_bytes(draw(caption, number)))
    monkeypatch.setenv("EMBEDDING_STUDIO_CATALOG_LOADER", "local_image")
    monkeypatch.setenv("EMBEDDING_STUDIO_CATALOG_LOADER_OPTIONS", json.dumps({"root": str(root)}))
    reset_settings()
    clip = str(tiny_clip_directory(tmp_path / "clip", vocab=VOCABULARY))
    indexed = index_catalog(clip, LoaderSpec(name="local_image", options={"root": str(root)}), store=vector_store)
    assert indexed.item_count == 6
    with TestClient(create_app(run_migrations=False)) as client:
        yield client, root
    reset_settings()


@pytest.fixture()
def workers(task_repository: TaskRepository, vector_store: VectorStore) -> TaskWorkers:
    """The job functions a worker runs, here in the test's process."""
    return TaskWorkers(task_repository, vector_store)


def _run_upsert(client: TestClient, workers: TaskWorkers, items: list[dict]) -> str:
    answer = client.post("/api/v1/items/upsert", json={"items": items})
    assert answer.status_code == 202, answer.text
    task_id = answer.json()["id"]
    workers.upsert_worker(task_id)  # what a worker runs for the job, here in the test's process
    return task_id


def test_an_upserted_image_is_embedded_and_found_by_text(
    image_catalog: tuple[TestClient, Path], workers: TaskWorkers
) -> None:
    client, root = image_catalog
    (root / "new" / "yellow.png").parent.mkdir()
    (root / "new" / "yellow.png").write_bytes(png_bytes(draw("yellow circle", 9)))
    task_id = _run_upsert(
        client, workers, [{"item_id": "yellow-9", "image": "new/yellow.png", "payload": {"price": 3}}]
    )
    task = workers.tasks.get_task(task_id)
    assert task.status is TaskStatus.done, task.error
    hits = client.post("/api/v1/search", json={"query": "yellow circle", "limit": 10}).json()["results"]
    upserted = next(hit for hit in hits if hit["item_id"] == "yellow-9")
    assert upserted["payload"]["image"] == "new/yellow.png" and upserted["payload"]["price"] == 3
    assert upserted["payload"]["image_url"] == str(root.resolve() / "new" / "yellow.png")


def test_text_into_an_image_collection_is_refused_when_asked(image_catalog: tuple[TestClient, Path]) -> None:
    client, _ = image_catalog
    answer = client.post("/api/v1/items/upsert", json={"items": [{"item_id": "t", "text": "a red circle"}]})
    assert answer.status_code == 422, answer.text
    assert "holds images" in answer.text and "'t'" in answer.text
    both = client.post("/api/v1/items/upsert", json={"items": [{"item_id": "x", "text": "a", "image": "a.png"}]})
    assert both.status_code == 422 and "exactly one" in both.text


def test_an_image_that_cannot_be_read_fails_the_upsert_naming_it(
    image_catalog: tuple[TestClient, Path], workers: TaskWorkers
) -> None:
    client, _ = image_catalog
    answer = client.post("/api/v1/items/upsert", json={"items": [{"item_id": "gone", "image": "missing.png"}]})
    assert answer.status_code == 202, answer.text
    with pytest.raises(ValueError, match="cannot be upserted"):
        workers.upsert_worker(answer.json()["id"])
    task = workers.tasks.get_task(answer.json()["id"])
    assert task.status is TaskStatus.failed and "missing" in (task.error or ""), task.error


def test_upserted_images_survive_the_next_reindex(
    image_catalog: tuple[TestClient, Path], tmp_path: Path, workers: TaskWorkers
) -> None:
    """A reindex reads the catalog and the upserts; an upserted image is read by its key through the catalog's image
    loader and indexed with its payload, and one whose picture has gone since is counted, not silently dropped."""
    from embedding_studio.models.tiny import tiny_clip_directory

    client, root = image_catalog
    (root / "new").mkdir()
    for name, caption in (("yellow.png", "yellow circle"), ("gone.png", "green square")):
        (root / "new" / name).write_bytes(png_bytes(draw(caption, 9)))
    items = [
        {"item_id": "yellow-9", "image": "new/yellow.png", "payload": {"price": 3}},
        {"item_id": "gone-9", "image": "new/gone.png"},
        {"item_id": "shape-0", "image": "new/yellow.png", "payload": {"replaced": True}},  # over a catalog image
    ]
    assert workers.tasks.get_task(_run_upsert(client, workers, items)).status is TaskStatus.done
    (root / "new" / "gone.png").unlink()
    clip = str(tiny_clip_directory(tmp_path / "clip-2", seed=1, vocab=VOCABULARY))
    result = index_catalog(clip, LoaderSpec(name="local_image", options={"root": str(root)}), store=workers.store)
    # the six shapes, new/yellow (a file under the root, so a catalog item too) and yellow-9; gone-9 is reported
    assert result.item_count == 8 and result.skipped_items == 1
    hits = client.post("/api/v1/search", json={"query": "yellow circle", "limit": 10}).json()["results"]
    by_id = {hit["item_id"]: hit["payload"] for hit in hits}
    assert by_id["yellow-9"]["image"] == "new/yellow.png" and by_id["yellow-9"]["price"] == 3
    assert by_id["yellow-9"]["image_url"] == str(root.resolve() / "new" / "yellow.png")
    assert by_id["shape-0"]["image"] == "new/yellow.png" and by_id["shape-0"]["replaced"] is True
