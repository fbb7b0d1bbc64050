"""The report of an image fine-tuning task shows a few held-out queries' top images before and after, as inline
thumbnails: rebuilt from the task table, the tracker, the catalog's images and the two models."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image
from tests.finetuning.toy_images import VOCABULARY, catalog, png_bytes

from embedding_studio.reporting import ImageQueryComparison, ImageResult, ReportData, render_report
from embedding_studio.reporting.images import THUMBNAIL_PX, thumbnail_data_uri

if TYPE_CHECKING:
    from embedding_studio.tasks.repository import TaskRepository


def test_thumbnails_are_small_inline_jpegs_and_survive_the_saved_json() -> None:
    uri = thumbnail_data_uri(Image.new("RGB", (300, 150), (200, 10, 10)))
    assert uri.startswith("data:image/jpeg;base64,")
    picture = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert max(picture.size) == THUMBNAIL_PX and picture.size == (64, 32)
    result = ImageResult("red-1", "shapes/red-1.png", uri, 0.31)
    data = ReportData(title="t", image_queries=[ImageQueryComparison("red circle", [result], [result])])
    page = render_report(ReportData.from_json(data.to_json()))
    assert page.count(f'<img src="{uri}"') == 2 and "red circle" in page and "shapes/red-1.png" in page
    # a thumbnail that is no inline picture (an edited JSON) is not fetched from anywhere
    remote = ImageResult("x", "x", "https://example.com/x.png")
    assert "example.com" not in render_report(
        ReportData(title="t", image_queries=[ImageQueryComparison("q", [remote])])
    )


@pytest.mark.integration
def test_report_of_an_image_task_shows_thumbnails_before_and_after(
    clean_db: str, mlflow_in: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task_repository: TaskRepository
) -> None:
    from embedding_studio.config import reset_settings
    from embedding_studio.models.tiny import tiny_clip_directory
    from embedding_studio.reporting.task import build_task_report
    from embedding_studio.tasks import TaskKind, TaskStatus
    from embedding_studio.tracking import ExperimentsManager

    root = tmp_path / "images"
    root.mkdir()
    for item_id, image in catalog(1).items():  # 12 shapes, one of each caption
        (root / f"{item_id}.png").write_bytes(png_bytes(image))
    monkeypatch.setenv("EMBEDDING_STUDIO_CATALOG_LOADER", "local_image")
    monkeypatch.setenv("EMBEDDING_STUDIO_CATALOG_LOADER_OPTIONS", json.dumps({"root": str(root)}))
    reset_settings()
    start = tiny_clip_directory(tmp_path / "start", seed=0, vocab=VOCABULARY)
    tuned = tiny_clip_directory(tmp_path / "tuned", seed=1, vocab=VOCABULARY)  # stands for the best run's model
    tracker = ExperimentsManager()
    iteration = tracker.start_iteration("text_to_image", "1")
    with tracker.run(iteration, {"query_lr": 1e-5}) as run_id:
        tracker.log_metrics(run_id, {"val_ndcg_at_10": 0.5}, step=0)
    task, _ = task_repository.create_task(
        TaskKind.fine_tuning, {"batch_id": 1, "method": "text_to_image", "method_options": {"base_model": str(start)}}
    )
    task_repository.finish_task(
        task.id,
        TaskStatus.done,
        best_run_id=str(tuned),
        result={
            "experiment_id": iteration.experiment_id,
            "start_model_id": str(start),
            "held_out_queries": ["red circle", "blue square"],
        },
    )
    page = build_task_report(task_repository, task.id, tmp_path / "report.html").read_text()
    assert "Image queries: top results before and after" in page
    assert page.count("data:image/jpeg;base64,") == 2 * 2 * 5  # two queries, before and after, top five
    assert "red circle" in page and "of 12 catalog images" in page
    saved = ReportData.from_json((tmp_path / "report.json").read_text())
    assert [comparison.query for comparison in saved.image_queries] == ["red circle", "blue square"]
    assert all(result.key.endswith(".png") for result in saved.image_queries[0].after)
    reset_settings()


def test_the_task_keeps_a_few_distinct_held_out_queries_with_clicks() -> None:
    from embedding_studio.clickstream.types import FineTuningInput
    from embedding_studio.finetuning.pipeline import held_out_examples
    from embedding_studio.finetuning.query_retriever import TextQueryRetriever

    def session(number: int, query: str, clicks: list[str]) -> FineTuningInput:
        return FineTuningInput(f"s{number}", query, ["a", "b"], {"a": 1, "b": 2}, clicks)

    inputs = [session(1, "Red circle", []), session(2, "red circle", ["a"]), session(3, "red  circle ", ["b"])]
    inputs += [session(4 + n, f"query {n}", ["a"]) for n in range(8)]
    assert held_out_examples(TextQueryRetriever(), inputs, count=3) == ["red circle", "query 0", "query 1"]
