"""The report of one fine-tuning task, rebuilt from the task table and the tracker."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from embedding_studio.reporting.collect import collect_trials
from embedding_studio.reporting.data import DeploymentOutcome, ImageQueryComparison, ReportData
from embedding_studio.reporting.html import write_report

if TYPE_CHECKING:
    from embedding_studio.db import Database
    from embedding_studio.tasks import Task, TaskRepository

logger = logging.getLogger(__name__)


class ReportUnavailableError(RuntimeError):
    """The task cannot have a report (unknown, not a fine-tuning task, or no experiment yet)."""


def default_report_path(task_id: str) -> Path:
    from embedding_studio.config import get_settings

    return get_settings().data_dir / "reports" / f"task-{task_id}.html"


def build_task_report(tasks: TaskRepository, task_id: str, out: Path | None = None) -> Path:
    """The report of the task ``task_id`` of ``tasks``. Trials come fresh from the tracker; a held-out comparison
    saved with an earlier report (the demo's) is kept."""
    from embedding_studio.tasks import TaskKind, UnknownTaskError
    from embedding_studio.tracking import ExperimentsManager

    try:
        task = tasks.get_task(task_id)
    except UnknownTaskError as error:
        raise ReportUnavailableError(f"{error}; `embedding-studio tasks list` shows the tasks") from error
    if task.kind != TaskKind.fine_tuning:
        raise ReportUnavailableError(f"task {task_id} is a {task.kind.value} task; reports are about fine-tuning tasks")
    experiment_id = (task.result or {}).get("experiment_id")
    if not experiment_id:
        raise ReportUnavailableError(
            f"task {task_id} is {task.status.value} and has no experiment yet: nothing to report"
        )
    saved_path = default_report_path(task_id).with_suffix(".json")
    saved = ReportData.from_json(saved_path.read_text(encoding="utf-8")) if saved_path.is_file() else None
    data = ReportData(
        title=saved.title if saved else f"Fine-tuning task {task_id}",
        task_id=task_id,
        experiment_id=str(experiment_id),
        best_run_id=task.best_run_id,
        details={
            **(saved.details if saved else {}),
            "status": task.status.value,
            "batch": _batches(task),
            "method": str(task.params.get("method", "")),
        },
        trials=collect_trials(ExperimentsManager(), str(experiment_id), task.best_run_id),
        held_out=saved.held_out if saved else None,
        deployment=DeploymentOutcome.of_task_result(task.result),
    )
    data.image_queries, data.image_queries_note = _image_comparisons(task, tasks.database)
    return write_report(data, out or default_report_path(task_id))


def _image_comparisons(task: Task, database: Database) -> tuple[list[ImageQueryComparison], str]:
    """Thumbnails of held-out queries' top images before and after, for an image task (its catalog read with the
    upserts of ``database``); a failure to build them (a model or a store out of reach) is a note on the page, not a
    missing report."""
    from embedding_studio.items.upserted_items import UpsertedItems
    from embedding_studio.reporting.images import image_task_comparisons

    try:
        return image_task_comparisons(task, UpsertedItems(database))
    except Exception as error:  # noqa: BLE001 - the trials and the verdict are worth a report on their own
        logger.warning("report of task %s: no image comparison: %s", task.id, error)
        return [], f"the image comparison could not be built: {type(error).__name__}: {error}"


def _batches(task: Task) -> str:
    """The batches trained on ("1, 2, 3"), as the task recorded them; older tasks had only ``params.batch_id``."""
    recorded = (task.result or {}).get("batch_ids") or task.params.get("batch_ids")
    if isinstance(recorded, list) and recorded:
        return ", ".join(str(batch_id) for batch_id in recorded)
    if task.params.get("since_blue"):
        return "since blue"
    return str(task.params.get("batch_id", ""))
