"""The report says, in one visible line, whether the task's model was deployed and why."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from embedding_studio.cli.main import app
from embedding_studio.reporting import DeploymentOutcome, HeldOutComparison, ReportData, render_report

if TYPE_CHECKING:
    from embedding_studio.tasks.repository import TaskRepository

NOT_DEPLOYED = "not deployed: NDCG@10 0.4100 against blue 0.4300"


def _report(deployment: DeploymentOutcome | None) -> ReportData:
    held_out = HeldOutComparison("dbpedia", 9, {"ndcg@10": 0.43}, {"ndcg@10": 0.43})
    return ReportData(title="Fine-tuning task 7", task_id="7", held_out=held_out, deployment=deployment)


def test_a_model_kept_out_is_said_so_at_the_top_with_the_reason() -> None:
    page = render_report(_report(DeploymentOutcome(deployed=False, reason=NOT_DEPLOYED)))
    line = f"<p class='deployment not-deployed'>{NOT_DEPLOYED}</p>"
    assert line in page and page.index(line) < page.index("<h2>")
    assert "after (blue kept)" in page and "search after is search before" in page


def test_a_deployed_model_is_said_so_and_a_task_without_verdict_shows_none() -> None:
    reason = "deployed: no blue model to compare with"
    deployed = render_report(_report(DeploymentOutcome(deployed=True, reason=reason)))
    assert "<p class='deployment deployed'>deployed: no blue model to compare with</p>" in deployed
    assert "after (fine-tuned)" in deployed
    assert "class='deployment" not in render_report(_report(None))


def test_the_verdict_survives_the_saved_json_and_comes_from_the_task_result() -> None:
    data = _report(DeploymentOutcome(deployed=False, reason=NOT_DEPLOYED))
    assert ReportData.from_json(data.to_json()).deployment == data.deployment
    assert ReportData.from_json(_report(None).to_json()).deployment is None
    assert DeploymentOutcome.of_task_result({"deployment": {"deployed": False, "reason": NOT_DEPLOYED}}) == (
        DeploymentOutcome(False, NOT_DEPLOYED)
    )
    assert DeploymentOutcome.of_task_result({"deployment": None}) is None
    assert DeploymentOutcome.of_task_result(None) is None


@pytest.mark.integration
def test_report_command_shows_the_verdict_of_the_task(
    clean_db: str, mlflow_in: str, tmp_path: Path, task_repository: TaskRepository
) -> None:
    from embedding_studio.tasks import TaskKind, TaskStatus
    from embedding_studio.tracking import ExperimentsManager

    tracker = ExperimentsManager()
    iteration = tracker.start_iteration("default_text", "3")
    with tracker.run(iteration, {"query_lr": 5e-5}) as run_id:
        tracker.log_metrics(run_id, {"val_ndcg_at_10": 0.41}, step=0)
    task, _ = task_repository.create_task(
        TaskKind.fine_tuning, {"batch_id": 3, "method": "default_text", "deploy_as_blue": True}
    )
    task_repository.finish_task(
        task.id,
        TaskStatus.done,
        best_run_id=run_id,
        result={"experiment_id": iteration.experiment_id, "deployment": {"deployed": False, "reason": NOT_DEPLOYED}},
    )
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", task.id, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"<p class='deployment not-deployed'>{NOT_DEPLOYED}</p>" in out.read_text()
