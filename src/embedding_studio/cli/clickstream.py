"""``embedding-studio clickstream``: import historical logs, release batches, look at what was collected.

These commands work on the database directly (through the DAO), so they need no running server.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from embedding_studio.cli.consoles import output
from embedding_studio.cli.database import prepare_database
from embedding_studio.cli.errors import UserFacingError, friendly_errors

clickstream_app = typer.Typer(help="Clickstream: import logs, release batches, show stats.", no_args_is_help=True)

MAX_REJECTIONS_SHOWN = 50


@clickstream_app.command("import")
def import_command(
    file: Path = typer.Argument(
        ..., help="A .jsonl or .parquet file of sessions (bulk-endpoint shape), or a TREC Session Track .xml log."
    ),
    file_format: str | None = typer.Option(
        None, "--format", help="jsonl, parquet or trec-session (default: from the file name)."
    ),
    chunk_size: int = typer.Option(1000, min=1, help="Sessions stored per transaction."),
) -> None:
    """Import historical sessions with their events; bad records are skipped and listed with the reason.

    Example: embedding-studio clickstream import sessions.jsonl
    """
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    from embedding_studio.clickstream.dao import ClickstreamRepository
    from embedding_studio.clickstream.errors import ClickstreamError
    from embedding_studio.clickstream.importers import import_file

    console = output()

    if file_format is not None and file_format not in ("jsonl", "parquet", "trec-session"):
        raise typer.BadParameter(f"unknown format {file_format!r}; use jsonl, parquet or trec-session")
    with friendly_errors():
        clickstream = ClickstreamRepository(prepare_database())
        progress = Progress(
            TextColumn("[bold]importing[/bold] {task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        with progress:
            task = progress.add_task(file.name, total=None)
            try:
                result = import_file(
                    clickstream,
                    file,
                    file_format=file_format,  # type: ignore[arg-type]
                    chunk_size=chunk_size,
                    progress=lambda done, total: progress.update(task, completed=done, total=total),
                )
            except ClickstreamError as error:
                raise UserFacingError(str(error)) from error
    summary = (
        f"[green]{result.inserted} inserted[/green], {result.duplicates} already stored, "
        f"{result.totals.events_inserted} events stored, "
        f"{'[red]' if result.rejected else ''}{len(result.rejected)} rejected{'[/red]' if result.rejected else ''} "
        f"of {result.records_read} records in {file}"
    )
    console.print(summary)
    if result.rejected:
        table = Table(title="Rejected records", show_lines=False)
        table.add_column(result.position_name, justify="right")
        table.add_column("session_id")
        table.add_column("reason", overflow="fold")
        for rejected in result.rejected[:MAX_REJECTIONS_SHOWN]:
            table.add_row(str(rejected.index), rejected.session_id or "-", rejected.reason)
        console.print(table)
        if len(result.rejected) > MAX_REJECTIONS_SHOWN:
            console.print(f"... and {len(result.rejected) - MAX_REJECTIONS_SHOWN} more rejected records")


@clickstream_app.command("release")
def release_command() -> None:
    """Close the collecting batch so fine-tuning can use it; new sessions go to a fresh batch.

    Example: embedding-studio clickstream release
    """
    from embedding_studio.clickstream.dao import ClickstreamRepository

    with friendly_errors():
        release = ClickstreamRepository(prepare_database()).release_batch()
    output().print(
        f"released batch [bold]{release.released_batch_id}[/bold] with {release.session_count} sessions; "
        f"now collecting into batch {release.next_batch_id}"
    )


@clickstream_app.command("stats")
def stats_command(
    batch_id: int | None = typer.Option(None, "--batch-id", help="One batch in detail (default: all batches)."),
) -> None:
    """What has been collected, per batch.

    Example: embedding-studio clickstream stats --batch-id 3
    """
    from embedding_studio.clickstream.dao import ClickstreamRepository, UnknownBatchError

    with friendly_errors():
        clickstream = ClickstreamRepository(prepare_database())
        if batch_id is not None:
            try:
                stats = clickstream.get_batch_stats(batch_id)
            except UnknownBatchError as error:
                raise UserFacingError(f"{error}; `embedding-studio clickstream stats` lists them") from error
            table = Table(title=f"Batch {stats.batch_id} ({stats.status})", show_header=False)
            for name, value in (
                ("sessions", stats.session_count),
                ("sessions with clicks", stats.sessions_with_clicks),
                ("clicks", stats.click_count),
                ("events (all types)", stats.event_count),
                ("marked irrelevant", stats.irrelevant_count),
                ("users", stats.user_count),
            ):
                table.add_row(name, str(value))
            output().print(table)
            return
        batches = clickstream.list_batches()
    table = Table(title="Clickstream batches")
    for column in ("batch", "status", "sessions", "created", "released"):
        table.add_column(column, justify="right" if column in ("batch", "sessions") else "left")
    for batch in batches:
        table.add_row(
            str(batch.id),
            batch.status,
            str(batch.session_count),
            f"{batch.created_at:%Y-%m-%d %H:%M:%S}",
            f"{batch.released_at:%Y-%m-%d %H:%M:%S}" if batch.released_at else "-",
        )
    output().print(table)
