"""What an image task's report shows: a few held-out queries' top images before and after, as small thumbnails.

Metrics say an image model got better; the pictures say whether it learnt what the users meant. The task records a
few held-out query texts (``result.held_out_queries``); the report embeds a sample of the catalog's images with the
start model and with the fine-tuned one and shows each query's top images under both, as inline JPEG thumbnails
(``data:`` URIs) so the page stays one self-contained file. Nothing here is needed to train or serve: a report that
cannot build the comparison says why and shows the rest.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from embedding_studio.reporting.data import ImageQueryComparison, ImageResult

if TYPE_CHECKING:
    from embedding_studio.items.upserted_items import UpsertedItems
    from embedding_studio.tasks import Task

logger = logging.getLogger(__name__)

#: the thumbnails' longest side, in pixels: 50 of them stay under a few hundred kB of page
THUMBNAIL_PX = 64
#: catalog images the two models rank for the comparison (the whole catalog when it is smaller)
POOL_SIZE = 300
TOP_K = 5
QUERIES = 3


def thumbnail_data_uri(image: Any, size: int = THUMBNAIL_PX) -> str:
    """``image`` (PIL) shrunk to at most ``size`` pixels a side, as a ``data:image/jpeg;base64,...`` URI."""
    small = image.convert("RGB")
    small.thumbnail((size, size))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def compare_image_queries(
    queries: Sequence[str],
    before_model: Any,
    after_model: Any,
    images: Sequence[tuple[str, str, Any]],
    top_k: int = TOP_K,
) -> list[ImageQueryComparison]:
    """Each query's ``top_k`` of ``images`` (``(item_id, key, PIL image)``) under each model, with thumbnails."""
    if not queries or not images:
        return []
    pictures = [image for _, _, image in images]
    thumbnails: dict[int, str] = {}

    def ranked(model: Any) -> list[list[ImageResult]]:
        items = np.asarray(model.encode_items(pictures, batch_size=32), dtype=np.float32)
        texts = np.asarray(model.encode_queries(list(queries), batch_size=32), dtype=np.float32)
        scores = texts @ items.T
        results = []
        for row in scores:
            top = np.argsort(-row, kind="stable")[:top_k]
            for index in top:
                if int(index) not in thumbnails:
                    thumbnails[int(index)] = thumbnail_data_uri(pictures[int(index)])
            results.append(
                [ImageResult(images[i][0], images[i][1], thumbnails[int(i)], round(float(row[i]), 4)) for i in top]
            )
        return results

    before, after = ranked(before_model), ranked(after_model)
    return [
        ImageQueryComparison(query, before_top, after_top)
        for query, before_top, after_top in zip(queries, before, after, strict=True)
    ]


def image_task_comparisons(
    task: Task, upserted: UpsertedItems, pool_size: int = POOL_SIZE
) -> tuple[list[ImageQueryComparison], str]:
    """The comparison of an image fine-tuning task and a note saying how it was made; ``([], "")`` for text tasks,
    ``([], why)`` when an image task cannot have one (no recorded queries, no best model). The catalog is the
    method's loader with ``upserted`` (the API's upserts) on top."""
    from embedding_studio.finetuning.method import LoaderConfig, get_method
    from embedding_studio.items.registry import reads_images
    from embedding_studio.serving.models import resolve_model
    from embedding_studio.tasks.image_index import inner_key

    params = task.params or {}
    try:
        method = get_method(str(params.get("method") or "default_text"), **dict(params.get("method_options") or {}))
    except Exception as error:  # a method uninstalled since: the rest of the report still stands
        return [], f"the task's method cannot be loaded ({error})"
    if not (isinstance(method.loader, LoaderConfig) and reads_images(method.loader.name)):
        return [], ""
    result = task.result or {}
    queries = [str(query) for query in result.get("held_out_queries") or []][:QUERIES]
    if not queries:
        return [], "the task recorded no held-out queries (tasks before this report had none)"
    if not task.best_run_id:
        return [], "the task has no fine-tuned model"
    start_model = str(result.get("start_model_id") or method.base_model)
    loader = method.create_loader(upserted)
    try:
        sample = loader.sample(pool_size, seed=0)
        images = [
            (item.item_id, str(item.extra.get("image") or inner_key(loader, item.meta)), item.data)
            for item in sample
            if hasattr(item.data, "size") and hasattr(item.data, "mode")
        ]
    finally:
        loader.close()
    comparisons = compare_image_queries(queries, resolve_model(start_model), resolve_model(task.best_run_id), images)
    note = (
        f"Top {TOP_K} of {len(images)} catalog images for held-out queries, ranked by the start model "
        f"({start_model}) and by the fine-tuned model ({task.best_run_id})."
    )
    return comparisons, note
