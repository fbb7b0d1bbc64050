# ruff: noqa: F401, F811  (the object-store fixtures are imported from tests/items/conftest.py)
"""Issue 13's loop end to end, on the real parts: generated images in moto's S3 server, indexed with a tiny CLIP as
blue; clicks on the images of the shape asked for; a ``text_to_image`` fine-tuning task run by a real
``embedding-studio worker`` process with ``deploy_as_blue``; the child reindex embeds the images again with the
fine-tuned model and flips blue; ``POST /api/v1/search`` on the real app then answers the clicked kind of image.

Held-out images (never clicked, never shown) measure what was learnt: Recall@5 of each caption over them must rise.
The catalog is small and the model tiny so the whole loop stays well under a minute on two CPU cores.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from tests.finetuning.toy_images import (
    CAPTIONS,
    VOCABULARY,
    caption_of,
    catalog,
    click_sessions,
    png_bytes,
    recall_at_5,
)
from tests.items.conftest import S3_CREDENTIALS, s3_bucket, s3_endpoint

from embedding_studio.tasks import FineTuningTaskParams, LoaderSpec, TaskStatus, index_catalog
from embedding_studio.tasks.service import TaskService

from .worker_process import start_worker, stop_worker, wait_for

if TYPE_CHECKING:
    from embedding_studio.clickstream.dao import ClickstreamRepository
    from embedding_studio.tasks.repository import TaskRepository
    from embedding_studio.vectordb import VectorStore

pytestmark = pytest.mark.integration

TRAIN_PER_KIND, PER_KIND = 3, 5  # 36 clicked-on images, 24 held out
SESSIONS_PER_CAPTION = 5


def _released_batch(clickstream_repository: ClickstreamRepository) -> int:
    """The toy sessions (users click the images of the caption they typed), released as one batch."""
    for session in click_sessions(TRAIN_PER_KIND, sessions_per_caption=SESSIONS_PER_CAPTION, shown=6):
        clickstream_repository.add_session(session_id=session.session_id, query=session.query, results=session.results)
        clickstream_repository.add_events(
            session.session_id, [{"event_id": f"click-{item}", "item_id": item} for item in session.clicks]
        )
    return int(clickstream_repository.release_batch().released_batch_id)


def test_clicks_fine_tune_a_clip_through_the_worker_deploy_it_and_search_returns_the_clicked_kind(
    worker_env: Path,
    s3_bucket,
    s3_endpoint: str,
    tmp_path: Path,
    task_repository: TaskRepository,
    clickstream_repository: ClickstreamRepository,
    vector_store: VectorStore,
) -> None:
    from embedding_studio.models import load_embedding_model
    from embedding_studio.models.tiny import tiny_clip_directory
    from embedding_studio.serving.models import resolve_model

    bucket, client = s3_bucket
    images = catalog(PER_KIND)
    for key, image in images.items():
        client.put_object(Bucket=bucket, Key=f"shapes/{key}.png", Body=png_bytes(image))
    held_out = {key: image for key, image in images.items() if int(key.rsplit("-", 1)[1]) >= TRAIN_PER_KIND}
    loader = {
        "name": "s3_image",
        "options": {
            "bucket": bucket,
            "prefix": "shapes/",
            "extension": ".png",
            "endpoint_url": s3_endpoint,
            **S3_CREDENTIALS,
        },
    }
    base = str(tiny_clip_directory(tmp_path / "clip", vocab=VOCABULARY))
    first = index_catalog(base, LoaderSpec.model_validate(loader), batch_size=32, store=vector_store)
    assert first.item_count == len(images) and first.deployed_as_blue
    batch_id = _released_batch(clickstream_repository)
    before_search = _top5_precision(base)  # searched after the release: these sessions are not trained on

    # The configured catalog is not the images: the deployment's reindex must read the method's loader.
    task, _ = TaskService(task_repository).create_fine_tuning_task(
        FineTuningTaskParams(
            batch_id=batch_id,
            method="text_to_image",
            deploy_as_blue=True,
            method_options={
                "base_model": base,
                "loader": loader,
                "max_evals": 1,
                "num_epochs": 16,
                "batch_size": 16,
                "validation_pool_size": 0,
                "search_space": {"query_lr": [3e-3]},
                "fixed_params": {
                    "query_lr": 3e-3,
                    "item_lr": 3e-3,
                    "refit_on_all_sessions": False,
                    "choose_weight_share": False,
                },
            },
        )
    )
    worker = start_worker(worker_env)
    try:
        wait_for(
            lambda: task_repository.get_task(task.id).status.is_final,
            timeout=120,
            message=f"fine-tuning task {task.id} did not end",
            log_path=worker_env,
        )
        done = task_repository.get_task(task.id)
        assert done.status is TaskStatus.done, (done.error, done.progress_message)
        assert done.result["deployment"]["deployed"] is True, done.result["deployment"]
        child = done.result["reindex_task_id"]
        wait_for(
            lambda: task_repository.get_task(child).status.is_final,
            timeout=60,
            message=f"deployment reindex {child} did not end",
            log_path=worker_env,
        )
    finally:
        stop_worker(worker)
    reindex = task_repository.get_task(child)
    assert reindex.status is TaskStatus.done, reindex.error
    assert reindex.result["item_count"] == len(images) and reindex.result["skipped_items"] == 0
    assert vector_store.get_deployment().blue_model_id == done.best_run_id

    before = recall_at_5(load_embedding_model(base, device="cpu"), held_out)
    after = recall_at_5(resolve_model(done.best_run_id), held_out)
    print(f"held-out text-to-image Recall@5: {before:.3f} -> {after:.3f}")
    assert after >= before + 0.3, (before, after)

    after_search = _top5_precision(done.best_run_id)
    print(f"top-5 precision of the API's search: {before_search:.3f} -> {after_search:.3f}")
    # The split is by query: the captions held out for validation are never trained on, so not every caption gains.
    assert after_search >= before_search + 0.2, (before_search, after_search)


def _top5_precision(model_id: str) -> float:
    """The share of ``POST /api/v1/search``'s top 5 images (over the whole catalog) that are of the kind asked
    for, averaged over the captions; checks each answer comes from ``model_id`` with the image's S3 URL."""
    from fastapi.testclient import TestClient

    from embedding_studio.api.app import create_app

    shares = []
    with TestClient(create_app(run_migrations=False)) as api:
        for caption in CAPTIONS:
            answer = api.post("/api/v1/search", json={"query": caption, "limit": 5})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["model_id"] == model_id and len(body["results"]) == 5
            for result in body["results"]:
                assert result["payload"]["image_url"].endswith(f"/shapes/{result['item_id']}.png"), result
            shares.append(sum(caption_of(result["item_id"]) == caption for result in body["results"]) / 5)
    return sum(shares) / len(shares)
