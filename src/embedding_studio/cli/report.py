"""``embedding-studio report TASK_ID``: the HTML report of a fine-tuning task."""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    task_id: str = typer.Argument(
        ..., help="A fine-tuning task id or a unique prefix of it (embedding-studio tasks list)."
    ),
    out: Path | None = typer.Option(None, help="Where to write the page (default: <data_dir>/reports/task-ID.html)."),
) -> None:
    """Write the HTML report of a fine-tuning task: validation curves of every trial from the tracker, and the
    held-out before/after comparison when one was recorded (the demo records one).

    Examples:

      embedding-studio report 3f9c2a1b

      embedding-studio report 3f9c2a1b --out /tmp/task.html
    """

    from embedding_studio.cli.consoles import output
    from embedding_studio.cli.database import prepare_database
    from embedding_studio.cli.errors import UserFacingError, friendly_errors
    from embedding_studio.cli.tasks import whole_task_id
    from embedding_studio.reporting.task import ReportUnavailableError, build_task_report
    from embedding_studio.tasks import TaskRepository

    with friendly_errors():
        tasks = TaskRepository(prepare_database())
        try:
            path = build_task_report(tasks, whole_task_id(tasks, task_id), out)
        except ReportUnavailableError as error:
            raise UserFacingError(str(error)) from error
    output().print(f"[green]report written[/green] {path}")
