"""A reindex of a catalog above the shard threshold, embedded by two real ``embedding-studio worker`` processes.

The threshold and shard size are lowered through the environment the workers inherit, so 240 items make 4 shards.
Whichever worker takes the task owns the build and queues helper jobs on the reindex queue; the other takes one and
claims shards too (``tasks.shards``). The collection must hold every item exactly once and search must answer from
it after the flip; a helper killed with SIGKILL while it holds a shard must have that shard embedded again by the
owner, with the task still ending done.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from embedding_studio.serving.search import search_blue
from embedding_studio.tasks import LoaderSpec, ReindexTaskParams, TaskRepository, TaskStatus
from embedding_studio.tasks.service import TaskService
from embedding_studio.vectordb import VectorStore

from .worker_process import start_worker, stop_worker, wait_for, write_catalog

pytestmark = pytest.mark.integration

ITEMS = 240
SHARD_SIZE = 60


@pytest.fixture()
def sharded_env(worker_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Shards of 60 items from 100 items up, heartbeats every half second, silent for 3 s: dead."""
    monkeypatch.setenv("EMBEDDING_STUDIO_REINDEX_SHARD_THRESHOLD", "100")
    monkeypatch.setenv("EMBEDDING_STUDIO_REINDEX_SHARD_SIZE", str(SHARD_SIZE))
    monkeypatch.setenv("EMBEDDING_STUDIO_REINDEX_SHARD_HEARTBEAT_S", "0.5")
    monkeypatch.setenv("EMBEDDING_STUDIO_REINDEX_SHARD_STALE_AFTER_S", "3")
    monkeypatch.setenv("EMBEDDING_STUDIO_REINDEX_SHARD_POLL_S", "0.2")
    yield worker_env


def _ready_workers(store: VectorStore) -> int:
    with store.database.connection() as connection:
        row = connection.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
    return int(row[0]) if row else 0


@contextmanager
def _two_workers(store: VectorStore, log: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """worker-a and worker-b, both listening before the task exists (so the owner cannot embed every shard before
    the other one starts), stopped when the block ends."""
    workers = {name: start_worker(log, "--name", name) for name in ("worker-a", "worker-b")}
    try:
        wait_for(lambda: _ready_workers(store) >= 2, timeout=60, message="the workers did not start", log_path=log)
        yield workers
    finally:
        for worker in workers.values():
            stop_worker(worker)


def _done_result(tasks: TaskRepository, task_id: str, log: Path) -> dict[str, Any]:
    done = tasks.get_task(task_id)
    assert done.status is TaskStatus.done, (done.status, done.error, log.read_text()[-3000:])
    return done.result or {}


def _collection_counts(store: VectorStore, model_id: str) -> tuple[int, int, set[str]]:
    collection = store.get_collection(model_id)
    assert collection is not None
    with store.database.connection() as connection:
        rows = connection.execute(f'SELECT item_id FROM "{collection.table_name}"').fetchall()
    ids = [row[0] for row in rows]
    return len(ids), len(set(ids)), set(ids)


def _reindex(tasks: TaskRepository, model: str, loader: LoaderSpec, pause_s: float) -> str:
    task = TaskService(tasks).create_reindex_task(
        ReindexTaskParams(
            dest_model_id=model,
            deploy_as_blue=True,
            batch_size=20,
            pause_between_batches_s=pause_s,  # a shard takes seconds, so both workers get some
            loader=loader,
        )
    )
    return task.id


def _jsonl(catalog: Path) -> LoaderSpec:
    return LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)})


def _wait_until_it_ends(tasks: TaskRepository, task_id: str, log: Path) -> None:
    wait_for(
        lambda: tasks.get_task(task_id).status.is_final,
        timeout=120,
        message=f"reindex task {task_id} did not end",
        log_path=log,
    )


def test_two_workers_embed_the_shards_of_one_reindex_and_search_answers_from_it(
    sharded_env: Path,
    tiny_models: tuple[str, str],
    tmp_path: Path,
    vector_store: VectorStore,
    task_repository: TaskRepository,
) -> None:
    model, _ = tiny_models
    catalog = write_catalog(tmp_path / "corpus.jsonl", ITEMS)
    with _two_workers(vector_store, sharded_env) as workers:
        started = time.monotonic()
        task_id = _reindex(task_repository, model, _jsonl(catalog), pause_s=0.25)
        _wait_until_it_ends(task_repository, task_id, sharded_env)
        elapsed = time.monotonic() - started
        assert all(worker.poll() is None for worker in workers.values())

    result = _done_result(task_repository, task_id, sharded_env)
    assert result["shards"] == ITEMS // SHARD_SIZE
    assert set(result["shard_workers"]) == {"worker-a", "worker-b"}, result
    assert sum(result["shard_workers"].values()) == ITEMS // SHARD_SIZE
    assert result["item_count"] == ITEMS and result["part_count"] == ITEMS

    rows, distinct, ids = _collection_counts(vector_store, model)
    assert rows == distinct == ITEMS  # every item exactly once (one part each)
    assert ids == {f"item-{index}" for index in range(ITEMS)}
    assert vector_store.get_deployment().blue_model_id == model
    text = json.loads(catalog.read_text().splitlines()[5])["text"]
    answer = search_blue(text, limit=10, record_session=False, store=vector_store)
    assert answer.model_id == model and "item-5" in [hit.item_id for hit in answer.hits]
    with vector_store.database.connection() as connection:  # the build's rows go with it
        assert connection.execute("SELECT count(*) FROM reindex_shards").fetchone() == (0,)
    print(f"2 workers, {ITEMS} items in {result['shards']} shards: {elapsed:.1f}s, {result['shard_workers']}")


def test_a_killed_helpers_shard_is_embedded_again_and_the_reindex_ends_done(
    sharded_env: Path,
    tiny_models: tuple[str, str],
    tmp_path: Path,
    vector_store: VectorStore,
    task_repository: TaskRepository,
) -> None:
    model, _ = tiny_models
    catalog = write_catalog(tmp_path / "corpus.jsonl", ITEMS)
    killed: str | None = None
    with _two_workers(vector_store, sharded_env) as workers:
        task_id = _reindex(task_repository, model, _jsonl(catalog), pause_s=0.6)  # about 2 s per shard

        def helper_holding_a_shard() -> bool:
            nonlocal killed
            with vector_store.database.connection() as connection:
                row = connection.execute(
                    "SELECT worker FROM reindex_shards WHERE status = 'doing' AND worker <> owner LIMIT 1"
                ).fetchone()
            if row is None:
                return False
            killed = row[0]
            return True

        wait_for(helper_holding_a_shard, timeout=60, message="no helper took a shard", log_path=sharded_env)
        assert killed is not None
        workers[killed].send_signal(signal.SIGKILL)
        workers[killed].wait(timeout=10)
        _wait_until_it_ends(task_repository, task_id, sharded_env)

    result = _done_result(task_repository, task_id, sharded_env)
    assert result["retried_shards"] >= 1, result
    assert killed not in result["shard_workers"] or result["shard_workers"][killed] < ITEMS // SHARD_SIZE
    rows, distinct, ids = _collection_counts(vector_store, model)
    assert rows == distinct == ITEMS
    assert ids == {f"item-{index}" for index in range(ITEMS)}
    assert vector_store.get_deployment().blue_model_id == model


def test_two_workers_embed_the_shards_of_an_image_catalog(
    sharded_env: Path, tmp_path: Path, vector_store: VectorStore, task_repository: TaskRepository
) -> None:
    """An image model's reindex, sharded across two worker processes: the helper rebuilds the image reader from the
    owner's description and embeds pictures, not keys; every picture lands once, with its key."""
    from tests.finetuning.toy_images import VOCABULARY, catalog, png_bytes

    from embedding_studio.models.tiny import tiny_clip_directory

    images = catalog(20)  # 240 pictures: 4 shards of 60
    root = tmp_path / "images"
    root.mkdir()
    for image_id, picture in images.items():
        (root / f"{image_id}.png").write_bytes(png_bytes(picture))
    clip = str(tiny_clip_directory(tmp_path / "clip", vocab=VOCABULARY))
    with _two_workers(vector_store, sharded_env):
        task_id = _reindex(
            task_repository, clip, LoaderSpec(name="local_image", options={"root": str(root)}), pause_s=0.25
        )
        _wait_until_it_ends(task_repository, task_id, sharded_env)

    result = _done_result(task_repository, task_id, sharded_env)
    assert result["shards"] == 4 and set(result["shard_workers"]) == {"worker-a", "worker-b"}, result
    assert result["item_count"] == result["part_count"] == len(images)
    rows, distinct, ids = _collection_counts(vector_store, clip)
    assert rows == distinct == len(images) and ids == set(images)
    answer = search_blue("red circle", limit=3, record_session=False, store=vector_store)
    assert answer.model_id == clip and answer.hits[0].payload["image"] == f"{answer.hits[0].item_id}.png"
