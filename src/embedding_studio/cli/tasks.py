"""``finetune``, ``reindex``, ``tasks list|show|cancel`` and ``status`` (``search`` is in ``cli.search``).

Commands work on the database directly (the same one the API and the workers use): each takes the process's
``Database`` from ``prepare_database()`` once and hands its ``TaskRepository`` down; tasks they create are run by
``embedding-studio worker`` processes, and ``--follow`` shows one live.
"""

from __future__ import annotations

import json
import textwrap
import time
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from embedding_studio.cli.consoles import output
from embedding_studio.cli.database import configured_embedded_server, prepare_database
from embedding_studio.cli.errors import UserFacingError, friendly_errors

if TYPE_CHECKING:
    from embedding_studio.db import Database
    from embedding_studio.tasks import Task, TaskRepository
    from embedding_studio.vectordb import VectorStore

tasks_app = typer.Typer(help="Fine-tuning, reindex and upsert tasks.", no_args_is_help=True)

_STATUS_STYLE = {
    "pending": "yellow",
    "processing": "cyan",
    "done": "green",
    "failed": "red",
    "canceled": "magenta",
    "refused": "red",
}


def _styled(status: str) -> str:
    return f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]"


def shorten(message: str, width: int = 80) -> str:
    """A message cut at a word boundary with an ellipsis, so a table never ends on half a word."""
    return textwrap.shorten(message, width=width, placeholder=" …")


def _last_word(task: Task, waiting: str | None = None) -> str:
    """What a task says last: its error, else the deployment gate's verdict, else where it waits in the queue
    (``waiting``), else its last progress message."""
    if task.error:
        return escape(shorten(task.error))
    return deployment_line(task) or escape(shorten(waiting or task.progress_message or ""))


def waiting_line(database: Database, task: Task, ids: dict[str, str] | None = None) -> str | None:
    """Where a pending task waits and what runs first ("waiting: 2nd in the reindex queue, after fine_tuning task
    … (running, fine_tuning queue)"); None when it is not waiting in the queue."""
    from embedding_studio.tasks.queue import queue_position

    position = queue_position(database, task) if task.status.value == "pending" else None
    return position.describe(ids) if position is not None else None


def whole_task_id(tasks: TaskRepository, id_or_prefix: str) -> str:
    """The task id a user typed, completed from a unique prefix; unknown or ambiguous ids explained."""
    from embedding_studio.tasks import TaskError, UnknownTaskError

    try:
        return tasks.resolve_task_id(id_or_prefix)
    except UnknownTaskError as error:
        raise UserFacingError(f"{error}; `embedding-studio tasks list` shows the tasks") from error
    except TaskError as error:
        raise UserFacingError(str(error)) from error


def whole_model_id(tasks: TaskRepository, store: VectorStore, id_or_prefix: str | None) -> str | None:
    """A model id a user typed, with a shortened MLflow run id completed from ``tasks`` and ``store`` (see
    ``resolve_model_id``)."""
    from embedding_studio.tasks import TaskError
    from embedding_studio.tasks.model_ids import resolve_model_id

    if id_or_prefix is None:
        return None
    try:
        return resolve_model_id(tasks, store, id_or_prefix)
    except TaskError as error:
        raise UserFacingError(str(error)) from error


def deployment_line(task: Task) -> str | None:
    """The deployment gate's verdict on a fine-tuning task with deploy_as_blue, styled; None for other tasks."""
    deployment = (task.result or {}).get("deployment")
    if not isinstance(deployment, dict) or not deployment.get("reason"):
        return None
    colour = "green" if deployment.get("deployed") else "yellow"
    return f"[{colour}]{escape(str(deployment['reason']))}[/{colour}]"


def follow_task(tasks: TaskRepository, task_id: str, poll_s: float = 0.5) -> str:
    """Show a task's progress bar until it ends (and its child reindex, if it sent one); returns the status."""
    console = output()
    task = tasks.get_task(task_id)
    with Progress(
        TextColumn("[bold]{task.fields[kind]}[/] {task.fields[status]}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
    ) as progress:
        bar = progress.add_task(task.progress_message or "", total=1.0, kind=task.kind.value, status=task.status.value)
        while True:
            task = tasks.get_task(task_id)
            progress.update(
                bar,
                completed=task.progress,
                description=escape(waiting_line(tasks.database, task) or task.progress_message or ""),
                status=_styled(task.status.value),
            )
            if task.status.is_final:
                break
            time.sleep(poll_s)
    print_outcome(task)
    child_id = (task.result or {}).get("reindex_task_id")
    if child_id:
        console.print(f"deploying through reindex task {child_id}")
        return follow_task(tasks, child_id, poll_s)
    return task.status.value


def print_outcome(task: Task) -> None:
    """What a finished task did, as its last lines: "search now answers from model X…" or "not deployed: …"."""
    console = output()
    deploying = task.kind.value == "reindex" and bool(task.params.get("deploy_as_blue"))
    if task.error:
        prefix = f"not deployed: the reindex was {task.status.value}" if deploying else task.status.value
        console.print(f"[red]{escape(prefix)}:[/red] {escape(task.error)}")
    if task.best_run_id:
        console.print(f"best run: {task.best_run_id} ({task.best_model_url})")
    verdict = deployment_line(task)
    if verdict:
        console.print(verdict)
    elif task.kind.value != "fine_tuning" and task.status.value == "done" and task.progress_message:
        colour = "green" if task.kind.value != "reindex" or deploying else "yellow"
        console.print(f"[{colour}]{escape(task.progress_message)}[/{colour}]")


def finetune(
    batch_ids: list[int] = typer.Option(
        [], "--batch-id", min=1, help="A released clickstream batch; repeat it to train on several together."
    ),
    since_blue: bool = typer.Option(
        False,
        "--since-blue",
        help="Train on every batch released after the newest one the blue model was trained on (instead of "
        "--batch-id).",
    ),
    replay_share: float = typer.Option(
        1.0,
        "--replay-share",
        min=0.0,
        max=1.0,
        help="Share of the sessions of batches older than the newest chosen one to train on (the newest: all).",
    ),
    method: str = typer.Option("default_text", help="Fine-tuning method plugin."),
    method_options: str = typer.Option(
        "{}",
        "--method-options",
        help="Overrides of the method's fields as JSON, e.g. '{\"max_evals\": 2, \"num_epochs\": 1}' (the API's "
        "method_options); a loader's relative paths are made absolute here, in this directory.",
    ),
    embedding_model_id: str | None = typer.Option(
        None, "--model", help="Model to start from (default: the blue one, else the method's base model)."
    ),
    deploy_as_blue: bool = typer.Option(
        False,
        "--deploy-as-blue",
        help="Reindex with the best model and deploy it, when it retrieves at least as well as the blue model on "
        "the batch's held-out sessions.",
    ),
    force_deploy: bool = typer.Option(
        False, "--force-deploy", help="With --deploy-as-blue: deploy even when the model is not better than blue."
    ),
    min_deploy_gain: float = typer.Option(
        0.0,
        "--min-deploy-gain",
        min=0.0,
        help="With --deploy-as-blue: how much the model's held-out NDCG@10 (the method's main metric) must beat "
        "blue's by.",
    ),
    wait_on_conflict: bool = typer.Option(False, "--wait-on-conflict", help="Wait for a running reindex into it."),
    idempotency_key: str | None = typer.Option(None, help="The same key gives the same task back."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Show the task's progress until it ends."),
) -> None:
    """Create a fine-tuning task (run by a worker).

    With --deploy-as-blue the best model is compared with the blue one on the batch's held-out sessions and
    deployed only when at least as good (by --min-deploy-gain); otherwise the task ends done with
    "not deployed: NDCG@10 … against blue …". --force-deploy deploys it anyway.

    Several batches: --batch-id 1 --batch-id 2 --replay-share 0.3 trains on all of batch 2 and 30% of batch 1's
    sessions; --since-blue takes every batch released since the blue model's training.

    Example: embedding-studio finetune --batch-id 1 --deploy-as-blue --follow
    """
    from pydantic import ValidationError

    from embedding_studio.serving import ServingError
    from embedding_studio.tasks import FineTuningTaskParams, TaskError, TaskRepository
    from embedding_studio.tasks.service import TaskService
    from embedding_studio.vectordb import VectorStore

    with friendly_errors():
        if bool(batch_ids) == since_blue:
            raise UserFacingError("give --batch-id (once or more) or --since-blue, not both and not neither")
        options = _method_options(method_options)
        database = prepare_database()
        tasks = TaskRepository(database)
        try:
            task, created = TaskService(tasks).create_fine_tuning_task(
                FineTuningTaskParams(
                    batch_id=batch_ids[0] if len(batch_ids) == 1 else None,
                    batch_ids=batch_ids if len(batch_ids) > 1 else None,
                    since_blue=since_blue,
                    replay_share=replay_share,
                    method=method,
                    method_options=options,
                    embedding_model_id=whole_model_id(tasks, VectorStore(database), embedding_model_id),
                    deploy_as_blue=deploy_as_blue,
                    force_deploy=force_deploy,
                    min_deploy_gain=min_deploy_gain,
                    wait_on_conflict=wait_on_conflict,
                ),
                idempotency_key=idempotency_key,
            )
        except (TaskError, ServingError) as error:  # ServingError: a model id that names no model
            raise UserFacingError(str(error)) from error
        except ValidationError as error:  # e.g. --batch-id 2 --batch-id 2
            raise UserFacingError("; ".join(str(item["msg"]) for item in error.errors())) from error
        output().print(
            f"fine-tuning task {task.id} {'created' if created else 'already exists'}: {_styled(task.status)}"
        )
        if follow:
            final = follow_task(tasks, task.id)
            if final != "done":
                raise typer.Exit(code=1)


def _method_options(text: str) -> dict[str, Any]:
    """``--method-options`` as the request's dict, a loader's relative paths made absolute in the caller's
    directory (the server refuses relative ones, which a worker would read in its own)."""
    from embedding_studio.items.registry import with_absolute_paths

    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserFacingError(f"--method-options is not valid JSON: {error.msg}") from error
    if not isinstance(options, dict):
        raise UserFacingError("--method-options must be a JSON object, e.g. '{\"max_evals\": 2}'")
    loader = options.get("loader")
    if isinstance(loader, dict) and isinstance(loader.get("name"), str) and isinstance(loader.get("options"), dict):
        options["loader"] = {**loader, "options": with_absolute_paths(loader["name"], loader["options"])}
    return options


def reindex(
    dest_model_id: str = typer.Argument(..., help="Model to embed with: base name, directory or MLflow run id."),
    source_model_id: str | None = typer.Option(None, "--source", help="Collection to re-embed (default: blue)."),
    loader: str | None = typer.Option(None, help="Read the catalog with this loader instead (e.g. jsonl_catalog)."),
    loader_options: str = typer.Option(
        "{}",
        help='Loader options as JSON, e.g. \'{"path": "corpus.jsonl"}\'; relative paths are made absolute here, '
        "in this directory, before the task is sent.",
    ),
    deploy_as_blue: bool = typer.Option(False, "--deploy-as-blue", help="Flip search to it once built."),
    wait_on_conflict: bool = typer.Option(False, "--wait-on-conflict", help="Wait for a running reindex into it."),
    here: bool = typer.Option(False, "--here", help="Run in this process instead of sending it to a worker."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Show the task's progress until it ends."),
) -> None:
    """Embed the catalog with a model into a new collection; with --deploy-as-blue search flips to it.

    The request is checked before anything is queued (the model exists and is not already blue, the loader is
    known, takes these options and its local paths exist), so a mistake is told at once, not by a worker.

    Example: embedding-studio reindex all-MiniLM-L6-v2 --deploy-as-blue --here
    """
    from embedding_studio.items.registry import with_absolute_paths
    from embedding_studio.serving import ServingError
    from embedding_studio.tasks import LoaderSpec, ReindexTaskParams, TaskError, TaskRepository, run_reindex, service
    from embedding_studio.vectordb import VectorStore

    console = output()

    with friendly_errors():
        database = prepare_database()
        tasks = TaskRepository(database)
        store = VectorStore(database)
        try:
            options = json.loads(loader_options)
        except json.JSONDecodeError as error:
            raise UserFacingError(f"--loader-options is not valid JSON: {error.msg}") from error
        if not isinstance(options, dict):
            raise UserFacingError('--loader-options must be a JSON object, e.g. \'{"path": "corpus.jsonl"}\'')
        if loader:
            options = with_absolute_paths(loader, options)  # the caller's corpus.jsonl, not the worker's
        params = ReindexTaskParams(
            dest_model_id=whole_model_id(tasks, store, dest_model_id) or dest_model_id,
            source_model_id=whole_model_id(tasks, store, source_model_id),
            loader=LoaderSpec(name=loader, options=options) if loader else None,
            deploy_as_blue=deploy_as_blue,
            wait_on_conflict=wait_on_conflict,
        )
        try:
            if here:
                service.check_reindex_request(params, store)  # before the model is loaded, not after
                with Progress(
                    TextColumn("reindex"), BarColumn(), TimeElapsedColumn(), TextColumn("{task.description}")
                ) as progress:
                    bar = progress.add_task("", total=1.0)
                    result = run_reindex(
                        params,
                        progress=lambda fraction, message: progress.update(
                            bar, completed=fraction, description=message
                        ),
                        store=store,
                    )
                console.print(f"[green]{escape(result.summary())}[/green]")
                return
            task = service.TaskService(tasks).create_reindex_task(params)
        except (TaskError, ServingError) as error:  # ServingError: a model id that names no model
            raise UserFacingError(str(error)) from error
        console.print(
            f"reindex task {task.id}: {_styled(task.status.value)}" + (f" ({task.error})" if task.error else "")
        )
        waiting = waiting_line(tasks.database, task)
        if waiting and not follow:
            console.print(escape(waiting))
        if follow and not task.status.is_final:
            if follow_task(tasks, task.id) != "done":
                raise typer.Exit(code=1)


@tasks_app.command("list")
def list_tasks(
    kind: str | None = typer.Option(None, help="fine_tuning, reindex or upsert."),
    status: str | None = typer.Option(None, help="pending, processing, done, failed, canceled or refused."),
    limit: int = typer.Option(20, min=1, help="How many, newest first."),
) -> None:
    """The newest tasks.

    Example: embedding-studio tasks list --kind fine_tuning --status failed
    """
    from embedding_studio.tasks import TaskKind, TaskRepository, TaskStatus
    from embedding_studio.tasks.queue import queue_positions
    from embedding_studio.tasks.repository import MIN_ID_PREFIX

    with friendly_errors():
        repository = TaskRepository(prepare_database())
        try:
            kind_value = TaskKind(kind) if kind else None
            status_value = TaskStatus(status) if status else None
        except ValueError as error:
            raise UserFacingError(str(error)) from error
        tasks = repository.list_tasks(kind=kind_value, statuses=[status_value] if status_value else None, limit=limit)
        prefixes = repository.shortest_unique_prefixes([task.id for task in tasks])
        positions = queue_positions(repository.database, tasks)
    table = Table("id", "kind", "status", "progress", "created", "message / error")
    table.columns[0].no_wrap = True  # an id cut with "…" could not be typed back
    table.columns[0].min_width = MIN_ID_PREFIX
    for task in tasks:
        table.add_row(
            prefixes[task.id],
            task.kind.value,
            _styled(task.status.value),
            f"{task.progress:.0%}",
            task.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            _last_word(task, positions[task.id].describe(prefixes, limit=2) if task.id in positions else None),
        )
    output().print(table if tasks else "no tasks")


@tasks_app.command("show")
def show_task(
    task_id: str = typer.Argument(..., help="Task id, or a unique prefix of it (as `tasks list` prints)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Show its progress until it ends."),
) -> None:
    """Everything about one task.

    Example: embedding-studio tasks show 3f2a9c1b --follow
    """
    from embedding_studio.tasks import TaskRepository

    with friendly_errors():
        tasks = TaskRepository(prepare_database())
        task_id = whole_task_id(tasks, task_id)
        task = tasks.get_task(task_id)
        if follow and not task.status.is_final:
            follow_task(tasks, task_id)
            task = tasks.get_task(task_id)
        waiting = waiting_line(tasks.database, task)
    for name, value in [
        ("id", task.id),
        ("kind", task.kind.value),
        ("status", _styled(task.status.value)),
        ("queue", escape(waiting) if waiting else None),
        ("progress", f"{task.progress:.0%} {escape(task.progress_message or '')}"),
        ("deployment", deployment_line(task)),
        ("params", json.dumps(task.params)),
        ("parent", task.parent_id),
        ("best run", task.best_run_id),
        ("best model", task.best_model_url),
        ("result", json.dumps(task.result) if task.result else None),
        ("error", task.error),
        ("created", task.created_at.isoformat()),
        ("finished", task.finished_at.isoformat() if task.finished_at else None),
    ]:
        if value is not None:
            output().print(f"[bold]{name}:[/bold] {value}")


@tasks_app.command("cancel")
def cancel_task(
    task_id: str = typer.Argument(..., help="Task id, or a unique prefix of it (as `tasks list` prints)."),
) -> None:
    """Cancel a pending task now, or ask a running one to stop at its next check.

    Example: embedding-studio tasks cancel 3f2a9c1b
    """
    from embedding_studio.tasks import TaskError, TaskRepository
    from embedding_studio.tasks.service import TaskService

    with friendly_errors():
        tasks = TaskRepository(prepare_database())
        task_id = whole_task_id(tasks, task_id)
        try:
            task = TaskService(tasks).cancel_task(task_id)
        except TaskError as error:
            raise UserFacingError(str(error)) from error
    output().print(
        f"task {task.id}: {_styled(task.status.value)}" + (" (stop requested)" if task.cancel_requested else "")
    )


def status() -> None:
    """The database (and whether the embedded server runs), the queue, the blue model and the last tasks.

    Example: embedding-studio status
    """
    from embedding_studio.tasks import TaskRepository
    from embedding_studio.tasks.queue import queue_depth
    from embedding_studio.vectordb import VectorStore

    console = output()

    with friendly_errors():
        embedded = configured_embedded_server()
        if embedded is not None:
            console.print(
                f"[bold]embedded PostgreSQL:[/bold] {escape(embedded.describe())}"
                + (" (`embedding-studio db stop` stops it)" if embedded.running else "")
            )
            if not embedded.running:
                # Asking should not start it: say what would, and stop here.
                console.print("any other command starts it (`embedding-studio serve` to serve search)")
                return
        database = prepare_database()
        tasks = TaskRepository(database)
        with database.connection() as connection:
            row = connection.execute("show server_version").fetchone()
        version = row[0] if row else None
        # Shown as SQLAlchemy's URL (the form DATABASE_URL is written in), the password hidden.
        shown = database.describe().replace("postgresql://", "postgresql+psycopg://", 1)
        console.print(f"[bold]database:[/bold] {shown} (PostgreSQL {version})")
        deployment = VectorStore(database).get_deployment()
        console.print(
            f"[bold]blue model:[/bold] {deployment.blue_model_id or 'none (index the catalog first)'}"
            + (f", rollback to {deployment.previous_blue_model_id}" if deployment.previous_blue_model_id else "")
        )
        depth = queue_depth(database)
        waiting = ", ".join(
            f"{queue}: {counts.get('todo', 0)} waiting, {counts.get('doing', 0)} running"
            for queue, counts in depth.items()
        )
        console.print(f"[bold]queue:[/bold] {waiting or 'empty'}")
        console.print(
            "[bold]tasks:[/bold] "
            + (", ".join(f"{count} {name}" for name, count in sorted(tasks.count_tasks_by_status().items())) or "none")
        )
        for task in tasks.list_tasks(limit=5):
            console.print(
                f"  {task.created_at:%Y-%m-%d %H:%M:%S} {task.kind.value:<11} {_styled(task.status.value)} {task.id}"
                + (f" — {last_word}" if (last_word := _last_word(task)) else "")
            )
