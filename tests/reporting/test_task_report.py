"""`embedding-studio report TASK_ID` against the real task table and a real MLflow store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from embedding_studio.cli.main import app
from embedding_studio.reporting import HeldOutComparison, ReportData, write_report

if TYPE_CHECKING:
    from embedding_studio.tasks.repository import TaskRepository


@pytest.mark.integration
def test_report_command_rebuilds_trials_and_keeps_the_saved_comparison(
    clean_db: str, mlflow_in: str, tmp_path: Path, task_repository: TaskRepository
) -> None:
    from embedding_studio.reporting.task import default_report_path
    from embedding_studio.tasks import TaskKind, TaskStatus
    from embedding_studio.tracking import ExperimentsManager

    tracker = ExperimentsManager()
    iteration = tracker.start_iteration("default_text", "3")
    with tracker.run(iteration, {"query_lr": 5e-5}) as run_id:
        tracker.log_metrics(run_id, {"val_ndcg_at_10": 0.5, "val_loss": 0.9}, step=0)
        tracker.log_metrics(run_id, {"val_ndcg_at_10": 0.6, "val_loss": 0.7}, step=8)
    task, _ = task_repository.create_task(TaskKind.fine_tuning, {"batch_id": 3, "method": "default_text"})
    task_repository.finish_task(
        task.id, TaskStatus.done, best_run_id=run_id, result={"experiment_id": iteration.experiment_id}
    )
    # what the demo saved when it ran this task
    write_report(
        ReportData(
            title="demo task",
            held_out=HeldOutComparison("msmarco", 9, {"ndcg@10": 0.4}, {"ndcg@10": 0.45}),
            details={"dataset": "msmarco"},
        ),
        default_report_path(task.id),
    )

    out = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(app, ["report", task.id, "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.count("<svg") == 3  # val_loss, val_ndcg_at_10, before/after bars
    assert "0.4500" in page and "msmarco" in page and run_id in page
    restored = ReportData.from_json(out.with_suffix(".json").read_text())
    assert restored.trials[0].metrics["val_ndcg_at_10"] == [(0, 0.5), (8, 0.6)]
    assert restored.trials[0].is_best


@pytest.mark.integration
def test_report_of_a_reindex_task_is_refused(clean_db: str, task_repository: TaskRepository) -> None:
    from embedding_studio.tasks import TaskKind

    task, _ = task_repository.create_task(TaskKind.reindex, {"dest_model_id": "all-MiniLM-L6-v2"})
    result = CliRunner().invoke(app, ["report", task.id])
    assert result.exit_code == 1
    assert "is a reindex task" in " ".join(result.output.split())
